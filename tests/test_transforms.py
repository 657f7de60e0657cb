"""Clip transforms: one crop/flip/colour per clip, correct shapes, eval is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidkd.data.transforms import ClipParams, ClipTransform

pytestmark = pytest.mark.usefixtures("single_thread")

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def random_frame(seed: int = 0, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_identical_frames_stay_identical_under_random_train_transform():
    frames = np.stack([random_frame()] * 8)
    transform = ClipTransform(resize=(32, 44), crop=24, train=True, color_jitter=1.0, grayscale=0.5)
    outputs = []
    for seed in range(20):
        out = transform(frames, np.random.default_rng(seed))
        assert out.shape == (3, 8, 24, 24) and out.dtype == torch.float32
        assert torch.allclose(out, out[:, :1].expand_as(out))  # same crop/flip/colour on every frame
        outputs.append(out[:, 0])
    assert len({tuple(o.flatten()[:50].tolist()) for o in outputs}) > 10  # but it does vary between clips


def test_crop_matches_resized_window_and_flip():
    frames = np.stack([random_frame(1)] * 2)
    transform = ClipTransform(resize=None, crop=16, train=True, color_jitter=0, grayscale=0, mean=MEAN, std=STD)
    params = ClipParams(top=5, left=9, flip=False)
    out = transform.apply(frames, params)
    expected = (torch.from_numpy(frames[0, 5:21, 9:25]).float() / 255 - 0.5) / 0.25
    assert torch.allclose(out[:, 0].permute(1, 2, 0), expected, atol=1e-5)
    flipped = transform.apply(frames, ClipParams(top=5, left=9, flip=True))
    assert torch.allclose(flipped, out.flip(-1))


def test_eval_is_centre_crop_and_ignores_rng():
    frames = np.stack([random_frame(s) for s in range(4)])
    transform = ClipTransform(resize=None, crop=20, train=False, mean=MEAN, std=STD)
    a = transform(frames, np.random.default_rng(0))
    b = transform(frames, np.random.default_rng(99))
    assert torch.equal(a, b)
    expected = (torch.from_numpy(frames[2, 10:30, 18:38]).float() / 255 - 0.5) / 0.25
    assert torch.allclose(a[:, 2].permute(1, 2, 0), expected, atol=1e-5)


def test_resize_and_normalisation_of_a_flat_clip():
    frames = np.full((4, 24, 30, 3), 128, np.uint8)
    transform = ClipTransform(resize=(16, 20), crop=16, train=False, mean=MEAN, std=STD)
    out = transform(frames, np.random.default_rng(0))
    assert out.shape == (3, 4, 16, 16)
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-5)


def test_grayscale_gives_equal_channels():
    frames = np.stack([random_frame(3)] * 3)
    transform = ClipTransform(resize=None, crop=32, train=True, color_jitter=0, grayscale=1.0, mean=MEAN, std=STD)
    out = transform(frames, np.random.default_rng(0))
    assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[1], out[2], atol=1e-6)


def test_same_seed_same_output_and_values_in_range():
    frames = np.stack([random_frame(s) for s in range(6)])
    transform = ClipTransform(resize=(32, 44), crop=28, color_jitter=1.0, mean=MEAN, std=STD)
    a = transform(frames, np.random.default_rng(5))
    assert torch.equal(a, transform(frames, np.random.default_rng(5)))
    assert a.min() >= (0 - 0.5) / 0.25 - 1e-5 and a.max() <= (1 - 0.5) / 0.25 + 1e-5


def test_residual_is_rescaled_frame_difference():
    frames = np.stack([random_frame(s) for s in range(5)])
    rgb = ClipTransform(resize=None, crop=32, train=False)
    residual = ClipTransform(resize=None, crop=32, train=False, modality="residual")
    x = rgb(frames, np.random.default_rng(0))
    r = residual(frames, np.random.default_rng(0))
    assert torch.allclose(r[:, 1], (x[:, 0] - x[:, 1] + 1) / 2, atol=1e-6)
    assert torch.allclose(r[:, 0], (x[:, 4] - x[:, 0] + 1) / 2, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ClipTransform(resize=(64, 64), crop=112)
    with pytest.raises(ValueError):
        ClipTransform(modality="flow")
    with pytest.raises(ValueError):
        ClipTransform(resize=None, crop=16)(np.zeros((2, 8, 8, 3), np.uint8), np.random.default_rng(0))
