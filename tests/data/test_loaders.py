"""Loaders end to end on real files: shapes, frame positions, VCP on the middle clip, bad files, workers."""

from __future__ import annotations

import itertools
import os
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import decode_index, tuple_dataset, write_index_video, write_ucf_layout
from vidkd.data.datasets import load_split
from vidkd.data import loaders
from vidkd.data.loaders import ClipDataset, DecodedVideos, MultiClipDataset
from vidkd.data.sampling import TupleSpec
from vidkd.data.transforms import ClipTransform
from vidkd.methods.vcop import clip_orders
from vidkd.methods.vcp import apply_vcp, permute_quadrants, remote_possible, sample_vcp_label, vcp_positions
from vidkd.data.video import VideoReader
from vidkd.errors import DatasetError

pytestmark = pytest.mark.usefixtures("single_thread")

SIZE = 48
# Identity-like transform: no resize, full-frame square crop, values frame/255, so frame indices
# can be read back out of the output tensors.
IDENTITY = dict(resize=None, crop=SIZE, train=False, mean=(0, 0, 0), std=(1, 1, 1))


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    write_ucf_layout(root, {"Run": 1, "Jump": 2}, groups=3, clips=2, num_frames=100, height=SIZE, width=SIZE)
    return root


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Frame indices shown in a (C, T, H, W) clip made with IDENTITY."""
    frames = (clip.permute(1, 2, 3, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return [decode_index(f) for f in frames]


def test_pcl_tuple_positions_without_pretext(ucf):
    dataset = tuple_dataset(load_split(ucf, "train"), TupleSpec(), ClipTransform(**IDENTITY), pretext="none")
    assert len(dataset) == 8
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["clips"].shape == (3, 3, 16, SIZE, SIZE) and item["pretext_label"] == 0
        ids = [frame_ids(c) for c in item["clips"]]
        start = ids[0][0]
        assert 0 <= start <= 100 - 64
        assert ids == [list(range(start + k * 24, start + k * 24 + 16)) for k in range(3)]
        assert item["index"] == index and item["label"] == dataset.records[index].label


def test_vcp_lands_on_the_middle_clip_only(ucf):
    dataset = tuple_dataset(load_split(ucf, "train"), TupleSpec(), ClipTransform(**IDENTITY), pretext="vcp", fixed=True)
    labels = set()
    for seed in range(6):
        dataset.seed = seed
        for index in range(len(dataset)):
            item = dataset[index]
            label, clips = item["pretext_label"], item["clips"]
            first, last = frame_ids(clips[0]), frame_ids(clips[2])
            start = first[0]
            assert first == list(range(start, start + 16)) and last == list(range(start + 48, start + 64))
            middle = list(range(start + 24, start + 40))
            labels.add(label)
            if label in (0, 3):
                ids = frame_ids(clips[1])
                if label == 0:
                    assert ids == middle
                else:  # two chunks of 4 frames swapped
                    assert sorted(ids) == middle and sum(a != b for a, b in zip(ids, middle)) == 8
            elif label == 4:
                ids = frame_ids(clips[1])
                assert ids == list(range(ids[0], ids[0] + 16))
                assert ids[-1] < start - 16 or ids[0] >= start + 64 + 16
            elif label == 1:  # some rotation undoes it
                assert any(frame_ids(torch.rot90(clips[1], -k, dims=(2, 3))) == middle for k in (1, 2, 3))
            else:  # exactly one non-identity quadrant order undoes it
                undo = [o for o in itertools.permutations(range(4))
                        if frame_ids(permute_quadrants(clips[1], inverse(o))) == middle]
                assert len(undo) == 1 and undo[0] != (0, 1, 2, 3)
    assert labels == {0, 1, 2, 3, 4}


def inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(order.index(k) for k in range(len(order)))


def test_fixed_is_repeatable_and_epochs_differ(ucf):
    split = load_split(ucf, "train")
    transform = ClipTransform(resize=(40, 44), crop=32, train=True)
    fixed = tuple_dataset(split, TupleSpec(), transform, fixed=True, seed=3)
    a = [fixed[i]["clips"] for i in range(4)]
    fixed.set_epoch(5)
    b = [fixed[i]["clips"] for i in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))

    train = tuple_dataset(split, TupleSpec(), transform, seed=3)
    train.set_epoch(0)
    e0 = train[0]["clips"]
    assert torch.equal(e0, train[0]["clips"])  # reproducible within an epoch
    train.set_epoch(1)
    assert not torch.equal(e0, train[0]["clips"])
    # built in inference mode, handed out as an ordinary tensor: the caller may change it in place
    assert not e0.is_inference()
    e0.mul_(2.0)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches(ucf, workers):
    torch.set_num_threads(1)
    dataset = tuple_dataset(load_split(ucf, "train"), TupleSpec(), ClipTransform(resize=(40, 44), crop=32))
    dataset.set_epoch(0)
    loader = DataLoader(dataset, batch_size=4, num_workers=workers, shuffle=False)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["clips"].shape == (4, 3, 3, 16, 32, 32)
    assert batches[0]["pretext_label"].dtype == torch.int64
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(8))
    # same tuples whatever the number of workers
    assert torch.equal(batches[1]["clips"][0], dataset[4]["clips"])


def test_clip_and_multiclip_datasets(ucf):
    split = load_split(ucf, "test")
    clips = ClipDataset(split, 16, ClipTransform(**IDENTITY))
    item = clips[0]
    ids = frame_ids(item["clip"])
    assert item["clip"].shape == (3, 16, SIZE, SIZE) and ids == list(range(ids[0], ids[0] + 16))

    multi = MultiClipDataset(split, 4, 16, ClipTransform(**IDENTITY))
    item = multi[1]
    assert item["clips"].shape == (4, 3, 16, SIZE, SIZE)
    assert [frame_ids(c)[0] for c in item["clips"]] == [0, 28, 56, 84]
    centre = MultiClipDataset(split, 1, 16, ClipTransform(**IDENTITY))[0]["clips"]
    assert frame_ids(centre[0]) == list(range(42, 58))


def test_short_video_padding_in_clip_datasets(tmp_path):
    for k in range(2):
        write_index_video(tmp_path / "a" / f"a{k}.avi", 10, SIZE, SIZE)
        write_index_video(tmp_path / "b" / f"b{k}.avi", 10, SIZE, SIZE)
    split = load_split(tmp_path, "train", layout="folder", test_fraction=0.5)
    item = MultiClipDataset(split, 2, 16, ClipTransform(**IDENTITY))[0]
    assert frame_ids(item["clips"][0]) == list(range(10)) + [9] * 6


def make_bad_dataset(root, good, zero=0, garbage=0, short=0):
    write_ucf_layout(root, {"Run": 1}, groups=good + 1, clips=1, num_frames=70, height=SIZE, width=SIZE)
    videos = sorted((root / "videos").rglob("*_g0[2-9]_*.avi"))  # the train videos
    for path in videos[:zero]:
        path.write_bytes(b"")
    for path in videos[zero:zero + garbage]:
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for path in videos[zero + garbage:zero + garbage + short]:
        write_index_video(path, 30, SIZE, SIZE)
    return load_split(root, "train")


def test_bad_files_are_skipped_with_a_summary(tmp_path, caplog):
    split = make_bad_dataset(tmp_path, good=8, zero=1, garbage=1, short=1)
    with caplog.at_level(logging.WARNING, logger="vidkd.data"):
        dataset = tuple_dataset(split, TupleSpec(), ClipTransform(**IDENTITY))
    assert len(dataset) == 5
    assert len(dataset.skipped["unreadable"]) == 2 and len(dataset.skipped["too short"]) == 1
    assert "skipped 3 of 8 videos (2 unreadable, 1 too short)" in caplog.text
    assert "vidkd data check" in caplog.text


def test_mostly_bad_dataset_raises(tmp_path):
    split = make_bad_dataset(tmp_path, good=6, zero=2, garbage=2)
    with pytest.raises(DatasetError, match="only 2 of 6"):
        tuple_dataset(split, TupleSpec(), ClipTransform(**IDENTITY))


def test_decode_failure_at_getitem_substitutes_next_video(tmp_path, caplog):
    split = make_bad_dataset(tmp_path, good=4)
    dataset = tuple_dataset(split, TupleSpec(), ClipTransform(**IDENTITY), fixed=True)
    dataset.records[1].path.write_bytes(b"garbage" * 100)  # breaks after indexing
    with caplog.at_level(logging.WARNING, logger="vidkd.data"):
        item = dataset[1]
        again = dataset[1]
    assert item["index"] == 2 and torch.equal(item["clips"], again["clips"])
    assert dataset.skipped["decode error"] == [dataset.records[1].path]
    assert caplog.text.count("failed to decode") == 1  # warned once per file
    for record in dataset.records:
        record.path.write_bytes(b"")
    with pytest.raises(DatasetError):
        dataset[0]


def test_order_tuples_are_shuffled_into_the_labelled_order(ucf):
    """VCOP: the clips come in the order `clip_orders(3)[label]` names; every order is drawn."""
    dataset = tuple_dataset(load_split(ucf, "train"), TupleSpec(), ClipTransform(**IDENTITY), pretext="order",
                           fixed=True)
    orders = clip_orders(3)
    assert orders[0] == (0, 1, 2) and len(orders) == 6
    seen = set()
    for seed in range(8):
        dataset.seed = seed
        for index in range(len(dataset)):
            item = dataset[index]
            ids = [frame_ids(c) for c in item["clips"]]
            starts = sorted(clip[0] for clip in ids)
            chronological = [starts.index(clip[0]) for clip in ids]
            assert tuple(chronological) == orders[item["pretext_label"]]
            assert starts == [starts[0] + 24 * k for k in range(3)]  # clip_len + interval apart, as VCOP
            seen.add(item["pretext_label"])
    assert seen == set(range(6))


def test_preloaded_frames_give_bit_identical_samples(ucf):
    """Decoding once into memory (resized as the transform resizes) changes no sample."""
    transform = ClipTransform(resize=(40, 44), crop=32, color_jitter=1.0, grayscale=0.5, mean=(0.4,) * 3,
                              std=(0.2,) * 3, modality="residual")
    plain = tuple_dataset(load_split(ucf, "train"), TupleSpec(clip_len=8, interval=4), transform, pretext="vcp")
    cached = tuple_dataset(load_split(ucf, "train"), TupleSpec(clip_len=8, interval=4), transform, pretext="vcp")
    assert cached.preload(transform.resize, progress=False)
    for dataset in (plain, cached):
        dataset.set_epoch(3)
    for index in range(len(plain)):
        a, b = plain[index], cached[index]
        assert a["pretext_label"] == b["pretext_label"] and torch.equal(a["clips"], b["clips"])
    assert cached.frames_decoded == 0 < plain.frames_decoded  # nothing decoded after the preload
    assert not tuple_dataset(load_split(ucf, "train"), TupleSpec(), transform).preload((40, 44), budget_bytes=10)


def test_datasets_of_one_process_share_decoded_videos_and_a_changed_file_is_decoded_again(ucf, monkeypatch):
    store = DecodedVideos()
    monkeypatch.setattr(loaders, "DECODED", store)
    decoded: list[str] = []
    real_read = VideoReader.read

    def counting_read(self, indices):
        decoded.append(str(self.path))
        return real_read(self, indices)

    monkeypatch.setattr(VideoReader, "read", counting_read)
    transform = ClipTransform(resize=(40, 44), crop=32, train=False)
    split = load_split(ucf, "train")
    first = MultiClipDataset(split, 3, 8, transform)
    assert first.preload(transform.resize, progress=False)
    assert len(decoded) == len(first.records)
    second = tuple_dataset(load_split(ucf, "train"), TupleSpec(clip_len=8, interval=4), transform, pretext="vcp")
    assert second.preload(transform.resize, progress=False)
    assert len(decoded) == len(first.records)  # every video came from the store
    assert torch.equal(first[0]["clips"], MultiClipDataset(split, 3, 8, transform)[0]["clips"])  # the same samples
    # another size is another entry; a rewritten file (new mtime) is decoded anew
    before = len(decoded)
    MultiClipDataset(split, 3, 8, ClipTransform(resize=(36, 40), crop=32, train=False)).preload((36, 40), progress=False)
    assert len(decoded) == before + len(first.records)
    changed = first.records[0].path
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    before = len(decoded)
    MultiClipDataset(split, 3, 8, transform).preload(transform.resize, progress=False)
    assert decoded[before:] == [str(changed)]
    # a budget keeps only the most recently used videos
    small = DecodedVideos(budget_bytes=1)
    small.put(("a",), np.zeros(2, np.uint8))
    assert small.get(("a",)) is None


@pytest.mark.parametrize("shared", [False, True])
def test_tuple_clips_are_each_clip_transformed_alone_in_the_generators_order(ucf, shared):
    """A tuple's clips go through the transform together, bit-for-bit what one clip at a time gives
    when the generator is drawn in the documented order: each clip's augmentation, then after the
    middle clip its remote clip's augmentation and its VCP choice."""
    transform = ClipTransform(resize=(40, 44), crop=32, color_jitter=0.7, grayscale=0.3, mean=(0.4,) * 3,
                              std=(0.2,) * 3, modality="residual")
    spec = TupleSpec(clip_len=8, interval=4)
    dataset = tuple_dataset(load_split(ucf, "train"), spec, transform, pretext="vcp", seed=5,
                           shared_augmentation=shared)
    dataset.set_epoch(2)
    labels = set()
    for index in range(len(dataset)):
        rng = dataset._rng(index)
        record = dataset.records[index]
        label = sample_vcp_label(rng, remote_possible(record.num_frames, spec))
        positions = vcp_positions(record.num_frames, spec, rng, label)
        with VideoReader(record.path) as reader:
            video = reader.read(list(range(record.num_frames)))
        shared_params = transform.sample_params(rng, video.shape[1:3]) if shared else None
        expected = []
        for i, start in enumerate(positions.clip_starts):
            frames = video[start:start + spec.clip_len]
            clip = transform.apply(frames, shared_params or transform.sample_params(rng, video.shape[1:3]),
                                   modality=False)
            if i == 1 and label:
                remote = None
                if label == 4:
                    remote = transform.apply(video[positions.remote_start:positions.remote_start + spec.clip_len],
                                             shared_params or transform.sample_params(rng, video.shape[1:3]),
                                             modality=False)
                clip = apply_vcp(clip, label, rng, remote=remote)
            expected.append(transform.to_modality(clip))
        item = dataset[index]
        labels.add(item["pretext_label"])
        assert item["pretext_label"] == label and torch.equal(item["clips"], torch.stack(expected))
        assert not item["clips"].is_inference()
    assert len(labels) >= 3


@pytest.mark.parametrize("pretext, shared", [("vcp", False), ("vcp", True), ("order", False)])
def test_a_batch_made_together_is_its_items_made_one_by_one(ucf, pretext, shared):
    """`__getitems__` (what a DataLoader calls) transforms a batch's clips together; every item is
    bit-for-bit `dataset[i]`, for tuples, single clips and evaluation clips."""
    transform = ClipTransform(resize=(40, 44), crop=32, color_jitter=0.7, grayscale=0.3, blur=0.2, mean=(0.4,) * 3,
                              std=(0.2,) * 3, modality="residual_rescaled")
    split = load_split(ucf, "train")
    tuples = tuple_dataset(split, TupleSpec(clip_len=8, interval=4), transform, pretext=pretext, seed=2,
                          shared_augmentation=shared)
    clips = ClipDataset(split, 8, transform, seed=2, fixed=True)
    multi = MultiClipDataset(split, 3, 8, transform, seed=2)
    tuples.set_epoch(4)
    indices = [5, 0, 7, 2, 2, 3, 6, 1]
    for dataset in (tuples, clips, multi):
        batch = dataset.__getitems__(indices)
        assert len(batch) == len(indices)
        for index, item in zip(indices, batch):
            alone = dataset[index]
            assert item.keys() == alone.keys() and item["index"] == index
            for key, value in alone.items():
                assert torch.equal(item[key], value) if torch.is_tensor(value) else item[key] == value
    labels = {item["pretext_label"] for item in tuples.__getitems__(list(range(8)))}
    assert len(labels) >= 2  # the batch mixes transformations (or orders)


@pytest.mark.parametrize("pretext,workers,style", [("vcp", 0, "clip"), ("vcp", 2, "clip"), ("order", 0, "clip"),
                                                   ("vcp", 0, "pil")])
def test_augmentation_deferred_to_the_model_device_gives_the_same_clips(ucf, pretext, workers, style):
    """`data.transform_device: model`: the workers decode and crop (uint8), the rest runs on the batch;
    on the CPU the clips are bit for bit those of the workers' full transform, remote clips included."""
    augment = dict(resize=(40, 44), crop=32, color_jitter=0.8, grayscale=0.3, blur=0.5, modality="residual",
                   jitter_order="random", jitter_style=style, antialias=style == "pil")
    spec = TupleSpec(clip_len=8, interval=4)
    split = load_split(ucf, "train")
    on_workers = tuple_dataset(split, spec, ClipTransform(**augment), pretext=pretext, seed=5, progress=False)
    deferred = tuple_dataset(split, spec, ClipTransform(**augment), pretext=pretext, seed=5, progress=False,
                            deferred=True)
    for dataset in (on_workers, deferred):
        dataset.set_epoch(2)
    expected = list(DataLoader(on_workers, batch_size=4, num_workers=0, collate_fn=on_workers.collate))
    got = list(DataLoader(deferred, batch_size=4, num_workers=workers, collate_fn=deferred.collate))
    assert got[0]["crops"].dtype == torch.uint8 and got[0]["crops"].shape[1:] == (8, 32, 32, 3)
    labels = []
    for want, batch in zip(expected, got):
        assert torch.equal(batch["pretext_label"], want["pretext_label"]) and torch.equal(batch["index"], want["index"])
        clips = loaders.batch_clips(batch, "cpu")
        assert torch.equal(clips, want["clips"]) and torch.equal(batch["clips"], clips)  # finished once, kept
        labels += batch["pretext_label"].tolist()
    if pretext == "vcp":
        assert 4 in labels and len(set(labels)) > 2  # remote clips and other VCP labels went through it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.py checks it too)")
def test_augmentation_on_a_gpu_matches_the_cpu_within_float_tolerance(ucf):
    transform = ClipTransform(resize=(40, 44), crop=32, color_jitter=0.8, grayscale=0.3, blur=0.5, modality="residual",
                              jitter_order="random")
    dataset = tuple_dataset(load_split(ucf, "train"), TupleSpec(clip_len=8, interval=4), transform, seed=5,
                           progress=False, deferred=True)
    dataset.set_epoch(1)
    batch = dataset.collate(dataset.__getitems__(list(range(len(dataset)))))
    on_cpu = batch["pending"].finish(batch["crops"])
    on_gpu = batch["pending"].finish(batch["crops"].cuda()).cpu()
    assert (on_cpu - on_gpu).abs().max() < 1e-4
