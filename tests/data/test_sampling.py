"""Sampler arithmetic: clip positions, bounds, remote clip distance, short videos."""

from __future__ import annotations

import numpy as np
import pytest

from vidkd.data.samplers import read_clips
from vidkd.data.sampling import (TupleSpec, clip_indices, evenly_spaced_starts, fit_interval, min_tuple_frames,
                                 random_clip_start, sample_tuple, tuple_clip_starts)
from vidkd.methods.vcp import (REFERENCE_REMOTE_GAP, remote_positions, remote_possible, sample_tuple_reference,
                               sample_tuple_with_remote)


def test_span_and_clip_starts_do_not_overlap():
    spec = TupleSpec()
    assert spec.span == 64
    assert tuple_clip_starts(10, spec) == [10, 34, 58]
    assert TupleSpec(clip_len=8, interval=4, tuple_len=4).span == 4 * 8 + 3 * 4
    starts = tuple_clip_starts(0, spec)
    for a, b in zip(starts, starts[1:]):
        assert b - (a + spec.clip_len) == spec.interval  # gap of exactly `interval` frames


def test_invalid_spec():
    with pytest.raises(ValueError):
        TupleSpec(clip_len=0)
    with pytest.raises(ValueError):
        TupleSpec(interval=-1)


@pytest.mark.parametrize("num_frames", [64, 65, 96, 150, 300])
def test_sample_tuple_bounds_over_many_seeds(num_frames):
    spec = TupleSpec()
    seen_starts = set()
    for seed in range(300):
        pos = sample_tuple(num_frames, spec, np.random.default_rng(seed))
        assert pos.clip_starts == tuple_clip_starts(pos.clip_starts[0], spec)
        assert 0 <= pos.clip_starts[0] and pos.clip_starts[-1] + spec.clip_len <= num_frames
        seen_starts.add(pos.clip_starts[0])
    if num_frames - spec.span <= 50:  # uniform over 0..num_frames-span: both ends are reached
        assert {0, num_frames - spec.span} <= seen_starts


@pytest.mark.parametrize("num_frames", [96, 97, 120, 150, 400])
def test_remote_clip_is_at_least_clip_len_outside_the_tuple(num_frames):
    spec = TupleSpec()
    sides = set()
    for seed in range(300):
        pos = sample_tuple_with_remote(num_frames, spec, np.random.default_rng(seed))
        assert pos.remote_start is not None  # these videos always have room for one
        start, end = pos.clip_starts[0], pos.clip_starts[-1] + spec.clip_len  # tuple is [start, end)
        remote_end = pos.remote_start + spec.clip_len
        assert 0 <= pos.remote_start and remote_end <= num_frames
        assert start - remote_end >= spec.clip_len or pos.remote_start - end >= spec.clip_len
        sides.add("before" if pos.remote_start < start else "after")
    assert sides == {"before", "after"}  # both sides are used


def test_remote_positions_enumerates_exactly_the_valid_windows():
    spec = TupleSpec()
    num_frames, start = 200, 60
    valid = remote_positions(num_frames, start, spec.span, spec.clip_len)
    brute = [r for r in range(num_frames - spec.clip_len + 1)
             if start - (r + spec.clip_len) >= spec.clip_len or r - (start + spec.span) >= spec.clip_len]
    assert valid == brute


def test_no_remote_when_video_too_short_for_one():
    spec = TupleSpec()
    assert remote_possible(96, spec) and not remote_possible(95, spec)
    for seed in range(50):
        assert sample_tuple_with_remote(95, spec, np.random.default_rng(seed)).remote_start is None


def test_short_video_shrinks_interval_then_gives_up():
    spec = TupleSpec()
    assert fit_interval(64, spec) == 8
    assert fit_interval(60, spec) == 6
    assert fit_interval(48, spec) == 0
    assert min_tuple_frames(spec) == 48
    with pytest.raises(ValueError):
        fit_interval(47, spec)
    for num_frames in range(48, 64):
        for seed in range(20):
            pos = sample_tuple(num_frames, spec, np.random.default_rng(seed))
            starts = pos.clip_starts
            assert starts[-1] + spec.clip_len <= num_frames
            gaps = {b - a - spec.clip_len for a, b in zip(starts, starts[1:])}
            assert gaps == {fit_interval(num_frames, spec)}
    with pytest.raises(ValueError):
        sample_tuple(40, spec, np.random.default_rng(0))


def test_read_clips_reads_each_frame_once_in_order():
    """The frames of every clip (a remote clip's too) in one sorted read; a short video's last frame pads."""
    reads = []

    def read(indices):
        reads.append(indices)
        return np.asarray(indices)[:, None] * np.ones((1, 2), int)

    clips = read_clips(read, [0, 24, 48, 100], clip_len=16, num_frames=200)
    assert reads == [sorted(set(range(0, 16)) | set(range(24, 40)) | set(range(48, 64)) | set(range(100, 116)))]
    assert [c[:, 0].tolist() for c in clips] == [list(range(s, s + 16)) for s in (0, 24, 48, 100)]
    short = read_clips(read, [4], clip_len=8, num_frames=10)
    assert short[0][:, 0].tolist() == [4, 5, 6, 7, 8, 9, 9, 9]


def test_random_clip_start_bounds():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        s = random_clip_start(40, 16, rng)
        assert 0 <= s <= 24
        assert random_clip_start(10, 16, rng) == 0


def test_evenly_spaced_starts():
    assert evenly_spaced_starts(100, 16, 1) == [42]  # centre clip
    starts = evenly_spaced_starts(160, 16, 10)
    assert starts[0] == 0 and starts[-1] == 144 and len(starts) == 10
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert evenly_spaced_starts(10, 16, 3) == [0, 0, 0]
    with pytest.raises(ValueError):
        evenly_spaced_starts(100, 16, 0)


def test_clip_indices_pad_with_last_frame():
    assert clip_indices(0, 5, 3) == [0, 1, 2, 2, 2]
    assert clip_indices(4, 3, 100) == [4, 5, 6]


def test_reference_tuple_starts_overlap_as_pcl_writes_them():
    spec = TupleSpec(clip_len=16, interval=8, tuple_len=3, starts="reference")
    assert tuple_clip_starts(5, spec) == [5, 16, 27]  # start + i * (tuple_len + interval)
    assert tuple_clip_starts(5, TupleSpec()) == [5, 29, 53]  # vidkd / VCOP: start + i * (clip_len + interval)
    rng = np.random.default_rng(0)
    for _ in range(200):
        positions = sample_tuple(100, spec, rng)
        assert positions.clip_starts[0] <= 100 - spec.span  # the start range still assumes the full span


@pytest.mark.parametrize("num_frames", [70, 100, 200, 400])
def test_remote_label_distribution_vidkd_and_reference(num_frames):
    """vidkd: label 4 whenever the video has room for a remote clip on either side; the reference
    (PCL) redraws it from 0..3 unless the tuple leaves room on BOTH sides, so label 4 is rarer."""
    spec = TupleSpec()
    draws = 6000
    rng = np.random.default_rng(num_frames)
    labels = []
    for _ in range(draws):
        positions, label = sample_tuple_reference(num_frames, spec, rng, int(rng.integers(5)))
        labels.append(label)
        if label == 4:
            start, remote = positions.clip_starts[0], positions.remote_start
            assert remote + spec.clip_len + REFERENCE_REMOTE_GAP <= start or remote >= start + spec.span + REFERENCE_REMOTE_GAP
        else:
            assert positions.remote_start is None
    starts = num_frames - spec.span + 1
    room = sum(1 for s in range(starts) if s >= 32 and num_frames - s - spec.span - 32 >= 0)
    p4 = 0.2 * room / starts
    share = np.bincount(labels, minlength=5) / draws
    assert share[4] == pytest.approx(p4, abs=0.02)
    assert all(v == pytest.approx((1 - p4) / 4, abs=0.025) for v in share[:4])
    vidkd_p4 = 0.2 if remote_possible(num_frames, spec) else 0.0
    assert vidkd_p4 >= p4 and (num_frames < 96 or vidkd_p4 > p4)  # the reference draws fewer remote clips
