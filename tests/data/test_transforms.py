"""Clip transforms: one crop/flip/colour per clip, correct shapes, eval is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidkd.data.transforms import ClipParams, ClipTransform, gaussian_blur, resize_frames

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
    with pytest.raises(ValueError, match="one value per RGB channel"):  # at construction, not in a worker
        ClipTransform(mean=(0.5, 0.5))
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


# ------------------------------------------------------------------ the reference's PIL pipeline
# PCL's loader (torchvision on PIL images): Resize((128, 171)) antialiased bilinear, RandomCrop 112,
# ColorJitter(0.4, 0.4, 0.4, 0.1) frame by frame on 8-bit images, Grayscale ("L" conversion).

def _real_frames(tmp_path, frames: int = 6) -> np.ndarray:
    """Decoded frames of a real 320x240 video (the synthetic renderer's textured scene, mpeg4)."""
    from vidkd.data.video import VideoReader, write_video
    from vidkd.synthetic.render import render_clip

    path = tmp_path / "scene.avi"
    write_video(path, render_clip(3, 1, 1, frames=frames, size=(320, 240)))
    with VideoReader(path) as reader:
        return reader.read(list(range(frames)))


def test_antialiased_resize_follows_pil_on_real_frames(tmp_path):
    """240x320 -> 128x171: `antialias=True` is PIL's antialiased bilinear within 1 level (max) and
    0.01 level (mean absolute difference; measured 0.002); plain bilinear is far from it (measured:
    max 35, mean 0.43), as torchvision's tensor Resize without antialiasing is."""
    from PIL import Image

    frames = _real_frames(tmp_path)
    pil = np.stack([np.asarray(Image.fromarray(f).resize((171, 128), Image.BILINEAR)) for f in frames]).astype(int)
    diffs = {}
    for antialias in (False, True):
        transform = ClipTransform(resize=(128, 171), crop=128, train=False, antialias=antialias)
        resized = resize_frames(torch.from_numpy(frames), (128, 171), antialias)
        assert resized.dtype == torch.uint8 and resized.shape == (len(frames), 128, 171, 3)
        crops = transform.crop_many([frames], [ClipParams(top=0, left=21)])[0]  # the transform resizes the same way
        assert torch.equal(crops, resized[:, :, 21:149])
        diff = np.abs(resized.numpy().astype(int) - pil)
        diffs[antialias] = (diff.max(), diff.mean())
    assert diffs[True][0] <= 1 and diffs[True][1] <= 0.01
    assert diffs[False][0] > 10 * diffs[True][0] and diffs[False][1] > 10 * diffs[True][1]


def test_preloaded_frames_are_resized_as_the_transform_resizes(tmp_path, monkeypatch):
    """`preload` resizes with the transform's `antialias`, so samples stay bit-identical, and the
    two resizes of one video are different entries of the process's store."""
    from conftest import write_ucf_layout
    from vidkd.data import loaders
    from vidkd.data.datasets import load_split

    monkeypatch.setattr(loaders, "DECODED", loaders.DecodedVideos())
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=2, clips=1, num_frames=40, height=48, width=64)
    split = load_split(tmp_path, "train")
    clips = {}
    for antialias in (False, True):
        transform = ClipTransform(resize=(30, 40), crop=28, train=False, antialias=antialias)
        plain = loaders.MultiClipDataset(split, 2, 8, transform)
        cached = loaders.MultiClipDataset(split, 2, 8, transform)
        assert cached.preload(transform.resize, progress=False)
        clips[antialias] = cached[0]["clips"]
        assert torch.equal(plain[0]["clips"], clips[antialias]) and getattr(cached, "frames_decoded", 0) == 0
    assert not torch.equal(clips[False], clips[True])


def _pil_hue(image, hue: float):
    """torchvision's `adjust_hue` for PIL images."""
    from PIL import Image

    h, s, v = image.convert("HSV").split()
    shifted = np.array(h, dtype=np.uint8)
    shifted += np.array(hue * 255).astype(np.uint8)  # over/underflows, as torchvision means it to
    return Image.merge("HSV", (Image.fromarray(shifted, "L"), s, v)).convert("RGB")


def _pil_reference(frames: np.ndarray, jitter, order, grayscale: bool) -> np.ndarray:
    """torchvision's ColorJitter (given factors and order) and Grayscale on PIL images, frame by frame."""
    from PIL import Image, ImageEnhance

    out = []
    for frame in frames:
        image = Image.fromarray(frame)
        for step in order:
            if step == 0:
                image = ImageEnhance.Brightness(image).enhance(jitter[0])
            elif step == 1:
                image = ImageEnhance.Contrast(image).enhance(jitter[1])
            elif step == 2:
                image = ImageEnhance.Color(image).enhance(jitter[2])
            else:
                image = _pil_hue(image, jitter[3])
        if grayscale:
            image = image.convert("L").convert("RGB")
        out.append(np.asarray(image))
    return np.stack(out)


PIL_CASES = [((1.3, 0.7, 1.35, 0.08), (0, 1, 2, 3), False),
             ((0.6, 1.4, 0.6, -0.1), (3, 2, 1, 0), False),
             ((1.4, 1.25, 0.65, 0.1), (2, 0, 3, 1), True),
             ((0.75, 0.62, 1.4, -0.003), (1, 3, 0, 2), False),
             ((1.05, 1.0, 1.0, 0.0), (0, 1, 2, 3), True)]


def test_pil_jitter_is_pils_on_real_frames(tmp_path):
    """`jitter_style="pil"` gives PIL's levels exactly (tolerance 0) on real frames: each step 8-bit,
    contrast around each frame's own mean grey, hue through PIL's HSV, grayscale as PIL's "L";
    one clip's frames transformed together, the factors and order fixed."""
    frames = _real_frames(tmp_path)
    crop = frames[:, 50:162, 90:202]
    transform = ClipTransform(resize=None, crop=112, train=True, mean=(0, 0, 0), std=(1, 1, 1), jitter_style="pil")
    params = [ClipParams(top=50, left=90, jitter=j, jitter_order=o, grayscale=g) for j, o, g in PIL_CASES]
    out = transform.apply_many([frames] * len(params), params)  # clips of different orders in one batch
    for clip, (jitter, order, gray) in zip(out, PIL_CASES):
        levels = torch.round(clip * 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        assert np.array_equal(levels, _pil_reference(crop, jitter, order, gray)), (jitter, order, gray)
    # the default style differs from PIL (float values, one pivot per clip, hue rotated in YIQ)
    clip_style = ClipTransform(resize=None, crop=112, train=True, mean=(0, 0, 0), std=(1, 1, 1))
    default = clip_style.apply(frames, params[0])
    assert not torch.equal(torch.round(default * 255), torch.round(out[0] * 255))


@pytest.mark.parametrize("factor", [0.6, 0.7731, 1.0, 1.2345, 1.4])
def test_pil_blend_is_image_blend_for_every_pair_of_levels(factor):
    from PIL import Image

    from vidkd.data.transforms import _pil_blend

    grid = np.arange(256, dtype=np.uint8)
    a, b = np.broadcast_to(grid[:, None], (256, 256)), np.broadcast_to(grid[None, :], (256, 256))
    want = np.asarray(Image.blend(Image.fromarray(np.ascontiguousarray(a)), Image.fromarray(np.ascontiguousarray(b)),
                                  factor))
    got = _pil_blend(torch.from_numpy(b.astype(np.float32)), torch.from_numpy(a.astype(np.float32)),
                     torch.tensor(factor, dtype=torch.float32))
    assert np.array_equal(got.numpy().astype(np.uint8), want)


@pytest.mark.parametrize("hue", [-0.1, -0.0402, 0.0, 0.05, 0.1])
def test_pil_hue_is_pils_hsv_round_trip(hue):
    """65,536 random colours plus every grey and the primaries (all 2**24 colours were checked
    once for hue -0.1, 0 and 0.08, and PIL's "L" for all of them)."""
    from PIL import Image

    from vidkd.data.transforms import _pil_adjust_hue, _pil_luma

    colours = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    colours[0] = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    colours[1, :8] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
                      [1, 0, 0], [255, 254, 254]]
    want = np.asarray(_pil_hue(Image.fromarray(colours), hue))
    levels = torch.from_numpy(colours).permute(2, 0, 1).float()[None, :, None]  # (1, 3, 1, H, W)
    luma = _pil_luma(levels)[0, 0, 0].numpy().astype(np.uint8)
    _pil_adjust_hue(levels, torch.tensor([int(hue * 255) % 256]))
    assert np.array_equal(levels[0, :, 0].permute(1, 2, 0).numpy().astype(np.uint8), want)
    assert np.array_equal(luma, np.asarray(Image.fromarray(colours).convert("L")))


@pytest.mark.parametrize("antialias", [False, True])
def test_pil_style_batched_deferred_and_alone_are_the_same_clips(antialias):
    """`apply_many` = `apply` per clip = `crop_many` + `finish_many`, bit for bit, in the pil style:
    random orders, clips with and without jitter, grayscale, blur, the residual."""
    transform = ClipTransform(resize=(32, 44), crop=28, color_jitter=0.7, grayscale=0.3, blur=0.3,
                              modality="residual", jitter_order="random", jitter_style="pil", antialias=antialias)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        clips = [np.stack([random_frame(seed * 10 + k + t) for t in range(4)]) for k in range(5)]
        params = [transform.sample_params(rng, (40, 56)) for _ in clips]
        together = transform.apply_many(clips, params)
        deferred = transform.finish_many(transform.crop_many(clips, params), params)
        assert torch.equal(together, deferred) and together.is_contiguous()
        for k, (frames, p) in enumerate(zip(clips, params)):
            assert torch.equal(together[k], transform.apply(frames, p))
    # float frames are rounded to levels first, and the caller's frames stay untouched
    transform = ClipTransform(resize=None, crop=28, color_jitter=1.0, grayscale=0.5, jitter_style="pil")
    frames = torch.from_numpy(np.stack([random_frame(s) for s in range(4)])).float()
    before = frames.clone()
    p = transform.sample_params(np.random.default_rng(1), (40, 56))
    assert torch.equal(transform.apply(frames, p), transform.apply(frames.to(torch.uint8), p))
    assert torch.equal(frames, before)


def test_jitter_style_and_antialias_come_from_the_config():
    from vidkd.config import DataConfig
    from vidkd.data.transforms import transforms_from_config

    train, evaluate = transforms_from_config(DataConfig())
    assert (train.jitter_style, train.antialias, evaluate.antialias) == ("clip", False, False)
    train, evaluate = transforms_from_config(DataConfig(resize_antialias=True, jitter_style="pil"))
    assert (train.jitter_style, train.antialias, evaluate.antialias) == ("pil", True, True)
    assert "jitter_style='pil'" in repr(train) and "antialias=True" in repr(train)
    with pytest.raises(ValueError, match="jitter_style"):
        ClipTransform(jitter_style="sometimes")
