"""The five VCP transformations do what their labels say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidkd.methods.vcp import VCP_CLASSES, apply_vcp, chunk_bounds, sample_vcp_label


def make_clip(t: int = 16, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.arange(3 * t * h * w, dtype=torch.float32).reshape(3, t, h, w)


def quadrants(x: torch.Tensor) -> list[torch.Tensor]:
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]


def test_label_0_is_unchanged():
    clip = make_clip()
    assert torch.equal(apply_vcp(clip, 0, np.random.default_rng(0)), clip)


def test_label_1_is_a_rotation():
    clip = make_clip()
    turns = set()
    for seed in range(30):
        out = apply_vcp(clip, 1, np.random.default_rng(seed))
        matches = [k for k in (1, 2, 3) if torch.equal(out, torch.rot90(clip, k, dims=(2, 3)))]
        assert len(matches) == 1
        turns.add(matches[0])
    assert turns == {1, 2, 3}
    with pytest.raises(ValueError, match="square"):
        apply_vcp(make_clip(h=8, w=6), 1, np.random.default_rng(0))


def test_label_2_is_a_non_identity_quadrant_permutation():
    clip = make_clip()
    orders = set()
    for seed in range(200):
        out = apply_vcp(clip, 2, np.random.default_rng(seed))
        src, dst = quadrants(clip), quadrants(out)
        order = tuple(next(i for i, q in enumerate(src) if torch.equal(q, d)) for d in dst)
        assert sorted(order) == [0, 1, 2, 3] and order != (0, 1, 2, 3)
        orders.add(order)
    assert len(orders) == 23  # every non-identity permutation occurs


def test_label_3_swaps_exactly_two_chunks():
    clip = make_clip()
    assert chunk_bounds(16) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    pairs = set()
    for seed in range(100):
        out = apply_vcp(clip, 3, np.random.default_rng(seed))
        moved = [k for k in range(4) if not torch.equal(out[:, 4 * k:4 * k + 4], clip[:, 4 * k:4 * k + 4])]
        assert len(moved) == 2
        a, b = moved
        assert torch.equal(out[:, 4 * a:4 * a + 4], clip[:, 4 * b:4 * b + 4])
        assert torch.equal(out[:, 4 * b:4 * b + 4], clip[:, 4 * a:4 * a + 4])
        pairs.add((a, b))
    assert len(pairs) == 6


def test_label_4_uses_the_remote_clip():
    clip, remote = make_clip(), -make_clip()
    assert torch.equal(apply_vcp(clip, 4, np.random.default_rng(0), remote=remote), remote)
    with pytest.raises(ValueError, match="remote"):
        apply_vcp(clip, 4, np.random.default_rng(0))
    with pytest.raises(ValueError):
        apply_vcp(clip, 5, np.random.default_rng(0))


def test_sample_vcp_label_distribution():
    rng = np.random.default_rng(0)
    with_remote = np.bincount([sample_vcp_label(rng, True) for _ in range(5000)], minlength=VCP_CLASSES)
    assert (with_remote > 850).all()
    without = [sample_vcp_label(rng, False) for _ in range(2000)]
    assert 4 not in without and set(without) == {0, 1, 2, 3}


def test_reference_quadrant_order_is_pcls_fixed_one():
    """PCL's spatial permutation is always [[D, C], [B, A]] (quadrants A B / C D of the input)."""
    clip = torch.zeros(1, 2, 4, 4)
    for value, (rows, cols) in enumerate(((slice(0, 2), slice(0, 2)), (slice(0, 2), slice(2, 4)),
                                          (slice(2, 4), slice(0, 2)), (slice(2, 4), slice(2, 4)))):
        clip[..., rows, cols] = value  # A=0 top-left, B=1, C=2, D=3 bottom-right
    outs = {tuple(apply_vcp(clip, 2, np.random.default_rng(seed), quadrant_order="reference")[0, 0, ::2, ::2]
                  .flatten().tolist()) for seed in range(10)}
    assert outs == {(3.0, 2.0, 1.0, 0.0)}
    randoms = {tuple(apply_vcp(clip, 2, np.random.default_rng(seed))[0, 0, ::2, ::2].flatten().tolist())
               for seed in range(40)}
    assert len(randoms) > 5 and (0.0, 1.0, 2.0, 3.0) not in randoms
