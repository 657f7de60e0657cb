"""Clip transforms: one crop/flip/colour per clip, correct shapes, eval is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidkd.data.transforms import ClipParams, ClipTransform, gaussian_blur

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


def test_residual_forms_are_frame_differences():
    """PCL's residual is roll(x, 1, T) - x (no rescaling); the VCP/IIC form is (that + 1) / 2."""
    frames = np.stack([random_frame(s) for s in range(5)])
    rgb = ClipTransform(resize=None, crop=32, train=False)
    x = rgb(frames, np.random.default_rng(0))
    pcl = ClipTransform(resize=None, crop=32, train=False, modality="residual")(frames, np.random.default_rng(0))
    rescaled = ClipTransform(resize=None, crop=32, train=False, modality="residual_rescaled")(
        frames, np.random.default_rng(0))
    assert torch.allclose(pcl[:, 1], x[:, 0] - x[:, 1], atol=1e-6)
    assert torch.allclose(pcl[:, 0], x[:, 4] - x[:, 0], atol=1e-6)  # frame 0 wraps around, as torch.roll
    assert torch.allclose(rescaled, (pcl + 1) / 2, atol=1e-6)


def test_residual_on_index_coded_frames_is_exact():
    """Frames whose every pixel is its index t / 255: the residual is -1/255 everywhere, frame 0 (T-1)/255."""
    frames = np.stack([np.full((8, 8, 3), t, np.uint8) for t in range(6)])
    identity = dict(resize=None, crop=8, train=False, mean=(0, 0, 0), std=(1, 1, 1))
    r = ClipTransform(**identity, modality="residual")(frames, np.random.default_rng(0))
    expected = torch.full((3, 6, 8, 8), -1 / 255)
    expected[:, 0] = 5 / 255
    assert torch.allclose(r, expected, atol=1e-7)


def test_blur_and_jitter_order_are_drawn_once_per_clip():
    frames = np.stack([random_frame(0)] * 4)  # four identical frames: one draw gives four identical outputs
    transform = ClipTransform(resize=(32, 44), crop=28, color_jitter=1.0, blur=1.0, jitter_order="random",
                              mean=MEAN, std=STD)
    draws = [transform.sample_params(np.random.default_rng(seed), (32, 44)) for seed in range(40)]
    assert all(0.1 <= d.blur_sigma <= 2.0 for d in draws)
    assert len({d.jitter_order for d in draws}) > 6 and all(sorted(d.jitter_order) == [0, 1, 2, 3] for d in draws)
    out = transform(frames, np.random.default_rng(3))
    assert all(torch.allclose(out[:, 0], out[:, t], atol=1e-6) for t in range(1, 4))
    # blur smooths: a sharp frame loses variance, a flat one is unchanged
    sharp = ClipTransform(resize=None, crop=32, train=False, mean=(0, 0, 0), std=(1, 1, 1))
    x = sharp.apply(frames, sharp.sample_params(np.random.default_rng(0), (32, 48)))
    blurred = gaussian_blur(x.permute(1, 0, 2, 3), 1.5)
    assert blurred.var() < 0.5 * x.var()
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ClipTransform(resize=(64, 64), crop=112)
    with pytest.raises(ValueError):
        ClipTransform(modality="flow")
    with pytest.raises(ValueError):
        ClipTransform(jitter_order="sometimes")
    with pytest.raises(ValueError):
        ClipTransform(resize=None, crop=16)(np.zeros((2, 8, 8, 3), np.uint8), np.random.default_rng(0))


def test_apply_leaves_the_callers_frames_untouched():
    """The transform works in place on its own copy: neither uint8 nor float input frames change."""
    transform = ClipTransform(resize=None, crop=32, train=True, color_jitter=1.0, grayscale=0.0, mean=MEAN, std=STD,
                              modality="residual_rescaled")
    for frames in (np.stack([random_frame(s) for s in range(4)]),
                   torch.from_numpy(np.stack([random_frame(s) for s in range(4)])).float()):
        before = frames.copy() if isinstance(frames, np.ndarray) else frames.clone()
        transform(frames, np.random.default_rng(0))
        assert (before == frames).all()


def _luma_reference(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_colour_jitter_matches_the_step_by_step_formulas(order):
    """Brightness, contrast (pivot: the clip's mean grey), saturation and hue, each clamped to [0, 1],
    in the drawn order, computed step by step on (T, 3, H, W) frames as torchvision does."""
    frames = np.stack([random_frame(s) for s in range(4)])
    brightness, contrast, saturation, hue = 1.3, 0.7, 1.35, 0.08
    transform = ClipTransform(resize=None, crop=40, train=True, mean=(0, 0, 0), std=(1, 1, 1))
    out = transform.apply(frames, ClipParams(top=0, left=8, jitter=(brightness, contrast, saturation, hue),
                                             jitter_order=order))
    x = torch.from_numpy(frames[:, :, 8:48]).float().permute(0, 3, 1, 2) / 255
    angle = 2 * np.pi * hue
    rotation = torch.tensor([[1.0, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]],
                            dtype=torch.float32)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    for step in order:
        if step == 0:
            x = x * brightness
        elif step == 1:
            pivot = _luma_reference(x).mean()
            x = (x - pivot) * contrast + pivot
        elif step == 2:
            grey = _luma_reference(x)
            x = (x - grey) * saturation + grey
        else:
            x = torch.einsum("ij,tjhw->tihw", torch.linalg.inv(yiq) @ rotation @ yiq, x)
        x = x.clamp(0, 1)
    assert out.is_contiguous()
    assert torch.allclose(out, x.permute(1, 0, 2, 3), atol=2e-6)


@pytest.mark.parametrize("modality", ["rgb", "residual", "residual_rescaled"])
def test_every_clip_comes_out_contiguous(modality):
    """(C, T, H, W) in memory order whatever was drawn (grayscale, blur, residual)."""
    frames = np.stack([random_frame(s) for s in range(4)])
    transform = ClipTransform(resize=(32, 44), crop=28, color_jitter=0.5, grayscale=0.5, blur=0.5, modality=modality)
    for seed in range(12):
        assert transform(frames, np.random.default_rng(seed)).is_contiguous()


@pytest.mark.parametrize("jitter_order", ["fixed", "random"])
@pytest.mark.parametrize("shared", [False, True])
def test_clips_transformed_together_equal_each_clip_alone(jitter_order, shared):
    """`apply_many` is bit-for-bit `apply` per clip: per-clip or shared draws, jitter on some clips
    and not others, grayscale, blur, the residual."""
    transform = ClipTransform(resize=(32, 44), crop=28, color_jitter=0.6, grayscale=0.3, blur=0.3,
                              modality="residual_rescaled", jitter_order=jitter_order)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        clips = [np.stack([random_frame(seed * 10 + k + t) for t in range(4)]) for k in range(4)]
        one = transform.sample_params(rng, (40, 56))
        params = [one if shared else transform.sample_params(rng, (40, 56)) for _ in clips]
        together = transform.apply_many(clips, params)
        assert together.shape == (4, 3, 4, 28, 28) and together.is_contiguous()
        for k, (frames, p) in enumerate(zip(clips, params)):
            assert torch.equal(together[k], transform.apply(frames, p))
    with pytest.raises(ValueError, match="one ClipParams per clip"):
        transform.apply_many(clips, params[:2])
