"""Clip-consistent augmentation in plain PyTorch: one set of random parameters per clip.

Order of operations (train): resize every frame to `resize` (H, W; bilinear on uint8, no
antialiasing) -> random `crop` x `crop`
window -> horizontal flip (p=0.5) -> scale to [0, 1] -> colour jitter (probability
`color_jitter`; brightness, contrast and saturation factors in [0.6, 1.4], hue shift in
[-0.1, 0.1] of a turn; in that order, or in a random order per clip as torchvision's
ColorJitter with `jitter_order="random"`) -> grayscale (probability `grayscale`) -> Gaussian blur
(probability `blur`, standard deviation uniform in [0.1, 2] pixels, as PCL's GaussianBlur) ->
normalise with mean/std. Eval: resize -> centre crop -> normalise.

Every random choice is drawn once per clip from the caller's `np.random.Generator`, so all frames
of a clip get the same crop, flip and colours, and a seeded generator reproduces a sample exactly.

Residual modalities, after normalisation: `residual` is PCL's `x <- roll(x, 1, T) - x` (each
frame's predecessor minus the frame; frame 0 takes the last frame, like `torch.roll`);
`residual_rescaled` is the earlier VCP/IIC form `(roll(x, 1, T) - x + 1) / 2`.
The loaders apply VCP before this step (`apply(..., modality=False)` then `to_modality`), the
order in which PCL computes the residual of an already transformed clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
_RGB_TO_YIQ = torch.tensor([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

MODALITIES = ("rgb", "residual", "residual_rescaled")
BLUR_SIGMA = (0.1, 2.0)  # PCL's GaussianBlur: sigma uniform in this range (pixels)
JITTER_STRENGTH = 0.4  # brightness / contrast / saturation factors in [1 - 0.4, 1 + 0.4]
HUE_STRENGTH = 0.1  # hue shift in [-0.1, 0.1] of a full turn


@dataclass(frozen=True)
class ClipParams:
    """The random choices for one clip (a crop box in the resized frame, flip, colours)."""

    top: int
    left: int
    flip: bool = False
    jitter: tuple[float, float, float, float] | None = None  # brightness, contrast, saturation, hue
    grayscale: bool = False
    jitter_order: tuple[int, ...] = (0, 1, 2, 3)  # brightness, contrast, saturation, hue: the order applied
    blur_sigma: float | None = None


class ClipTransform:
    """uint8 frames (T, H, W, 3) -> normalised float tensor (C, T, crop, crop)."""

    def __init__(self, resize: Sequence[int] = (128, 171), crop: int = 112, train: bool = True, flip: bool = True,
                 color_jitter: float = 0.8, grayscale: float = 0.2, mean: Sequence[float] = KINETICS_MEAN,
                 std: Sequence[float] = KINETICS_STD, modality: str = "rgb", blur: float = 0.0,
                 jitter_order: str = "fixed"):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        if jitter_order not in ("fixed", "random"):
            raise ValueError(f"jitter_order must be 'fixed' or 'random', got {jitter_order!r}")
        self.blur = float(blur)
        self.jitter_order = jitter_order
        self.resize = (int(resize[0]), int(resize[1])) if resize else None
        self.crop = int(crop)
        if self.resize and (self.crop > self.resize[0] or self.crop > self.resize[1]):
            raise ValueError(f"crop {self.crop} is larger than the resized frame {self.resize}")
        self.train = train
        self.flip = flip
        self.color_jitter = float(color_jitter)
        self.grayscale = float(grayscale)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)  # over (C, T, H, W)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.modality = modality

    def __repr__(self) -> str:
        return (f"ClipTransform(resize={self.resize}, crop={self.crop}, train={self.train}, flip={self.flip}, "
                f"color_jitter={self.color_jitter}, grayscale={self.grayscale}, blur={self.blur}, "
                f"jitter_order={self.jitter_order!r}, modality={self.modality!r})")

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        params = self.sample_params(rng, frames.shape[1:3])
        return self.apply(frames, params)

    def resized_hw(self, in_hw: Sequence[int]) -> tuple[int, int]:
        return self.resize if self.resize else (int(in_hw[0]), int(in_hw[1]))

    def sample_params(self, rng: np.random.Generator, in_hw: Sequence[int]) -> ClipParams:
        """Draw this clip's random choices; eval mode draws nothing and returns the centre crop."""
        height, width = self.resized_hw(in_hw)
        if self.crop > height or self.crop > width:
            raise ValueError(f"crop {self.crop} is larger than the frame {height}x{width}")
        if not self.train:
            return ClipParams(top=(height - self.crop) // 2, left=(width - self.crop) // 2)
        top = int(rng.integers(height - self.crop + 1))
        left = int(rng.integers(width - self.crop + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        jitter, order = None, (0, 1, 2, 3)
        if rng.random() < self.color_jitter:
            b, c, s = (float(v) for v in rng.uniform(1 - JITTER_STRENGTH, 1 + JITTER_STRENGTH, size=3))
            jitter = (b, c, s, float(rng.uniform(-HUE_STRENGTH, HUE_STRENGTH)))
            if self.jitter_order == "random":
                order = tuple(int(i) for i in rng.permutation(4))
        gray = bool(rng.random() < self.grayscale)
        sigma = float(rng.uniform(*BLUR_SIGMA)) if self.blur > 0 and rng.random() < self.blur else None
        return ClipParams(top=top, left=left, flip=flip, jitter=jitter, grayscale=gray, jitter_order=order,
                          blur_sigma=sigma)

    def apply(self, frames: np.ndarray | torch.Tensor, params: ClipParams, modality: bool = True) -> torch.Tensor:
        """Apply `params` to every frame; `modality=False` stops before the residual step."""
        return self.apply_many([frames], [params], modality=modality)[0]

    def apply_many(self, frames: Sequence[np.ndarray | torch.Tensor], params: Sequence[ClipParams],
                   modality: bool = True) -> torch.Tensor:
        """Clip k of the (K, C, T, crop, crop) result is `frames[k]` under `params[k]`, exactly as
        `apply` would make it alone. The clips of a tuple or of a video's evaluation go through
        each step together: a small clip costs more in tensor operations than in arithmetic."""
        if len(frames) != len(params) or not frames:
            raise ValueError(f"need one ClipParams per clip, got {len(params)} for {len(frames)} clips")
        crops = [self._crop(f, p) for f, p in zip(frames, params)]
        # The crops side by side as (K, C, T, H, W) in their own dtype (a byte each for uint8), then
        # one division makes the float clips; every step after it works in place on them.
        planar = torch.empty((len(crops), 3, *crops[0].shape[:3]), dtype=crops[0].dtype)
        for clip, crop in zip(planar, crops):
            clip.copy_(crop.permute(3, 0, 1, 2))
        return self._finish(planar, params, modality)

    def crop_many(self, frames: Sequence[np.ndarray | torch.Tensor], params: Sequence[ClipParams]) -> torch.Tensor:
        """The part of `apply_many` that stays with the data workers when augmentation runs on the
        model's device: resize, crop and flip, as (K, T, crop, crop, 3) in the frames' dtype."""
        if len(frames) != len(params) or not frames:
            raise ValueError(f"need one ClipParams per clip, got {len(params)} for {len(frames)} clips")
        return torch.stack([self._crop(f, p) for f, p in zip(frames, params)])

    def finish_many(self, crops: torch.Tensor, params: Sequence[ClipParams], modality: bool = True) -> torch.Tensor:
        """The rest of `apply_many`, on whatever device `crops` (from `crop_many`) is on: the same
        clips, bit for bit on the CPU, within float rounding elsewhere."""
        if len(crops) != len(params):
            raise ValueError(f"need one ClipParams per clip, got {len(params)} for {len(crops)} clips")
        return self._finish(crops.permute(0, 4, 1, 2, 3).contiguous(), params, modality)

    def _finish(self, planar: torch.Tensor, params: Sequence[ClipParams], modality: bool) -> torch.Tensor:
        """(K, 3, T, H, W) crops in [0, 255] -> the augmented, normalised float clips."""
        if planar.dtype == torch.uint8:
            x = torch.div(planar, 255.0)
        else:
            x = planar.to(torch.float32).div_(255.0).clamp_(0.0, 1.0)
        _color_jitter(x, params)
        for clip, p in zip(x, params):
            if p.grayscale:
                clip.copy_(_luma(clip))  # broadcast over the three channels
            if p.blur_sigma is not None:
                clip.copy_(gaussian_blur(clip, p.blur_sigma))
        x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
        return self.to_modality(x) if modality else x

    def _crop(self, frames: np.ndarray | torch.Tensor, params: ClipParams) -> torch.Tensor:
        """The (T, crop, crop, 3) window of `params`, flipped if drawn, in the frames' dtype."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(x.shape)}")
        if self.resize and tuple(x.shape[1:3]) != self.resize:
            # (T, 3, H, W) as a channels-last view: torch's uint8 bilinear kernel resizes it about
            # 5x faster than float
            x = F.interpolate(x.permute(0, 3, 1, 2), size=self.resize, mode="bilinear", align_corners=False,
                              antialias=False).permute(0, 2, 3, 1)
        x = x[:, params.top:params.top + self.crop, params.left:params.left + self.crop]
        return x.flip(2) if params.flip else x  # on the uint8 crop: a quarter of the bytes of the float clip

    def to_modality(self, clip: torch.Tensor) -> torch.Tensor:
        """RGB stays; the residuals become frame differences along T (dim -3 of (..., C, T, H, W))."""
        return to_modality(clip, self.modality)


def to_modality(clip: torch.Tensor, modality: str) -> torch.Tensor:
    """(..., C, T, H, W) clips -> their `modality`: rgb as is, PCL's residual, or the rescaled VCP/IIC residual."""
    if modality == "rgb":
        return clip
    residual = torch.empty_like(clip, memory_format=torch.contiguous_format)
    # roll(x, 1, T) - x without the rolled copy
    torch.sub(clip[..., :-1, :, :], clip[..., 1:, :, :], out=residual[..., 1:, :, :])
    torch.sub(clip[..., -1, :, :], clip[..., 0, :, :], out=residual[..., 0, :, :])
    if modality == "residual_rescaled":
        residual.add_(1.0).mul_(0.5)
    return residual


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every (H, W) plane of a 4-D tensor, (T, C, H, W) or (C, T, H, W) alike, with a separable
    Gaussian of standard deviation `sigma` (kernel radius ceil(3 sigma), edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """Luma of (..., 3, T, H, W) clips in [0, 1], shaped (..., 1, T, H, W). Element-wise on purpose: a
    BLAS dot product sums in an order that depends on the thread count, and runs must not."""
    r, g, b = (x[..., c:c + 1, :, :, :] for c in range(3))
    return torch.mul(r, LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2])


def _color_jitter(x: torch.Tensor, params: Sequence[ClipParams]) -> None:
    """Colour jitter of (K, 3, T, H, W) clips in [0, 1], in place, clip k as `params[k]` draws it:
    the four steps in its order (0 brightness, 1 contrast, 2 saturation, 3 hue), each one blend and
    a clamp to [0, 1] as torchvision's; the contrast pivot is the mean grey of the whole clip.
    Clips that share an order take each step together; a clip without jitter takes factors that
    change nothing exactly (x * 1, x + 0, a blend of weight 0, the clamp of values in [0, 1])."""
    if all(p.jitter is None for p in params):
        return
    orders = {p.jitter_order for p in params if p.jitter is not None}
    if len(orders) > 1:  # a random order per clip (torchvision's): one clip at a time
        for k, p in enumerate(params):
            if p.jitter is not None:
                _color_jitter(x[k:k + 1], [p])
        return
    draws = [p.jitter or (1.0, 1.0, 1.0, 0.0) for p in params]  # brightness, contrast, saturation, hue
    # per clip, rounded to float32 as a Python scalar operand would be: brightness, contrast, 1 - saturation
    brightness, contrast, grey_weight = torch.tensor(
        [[d[0] for d in draws], [d[1] for d in draws], [1.0 - d[2] for d in draws]]).view(3, -1, 1, 1, 1, 1).to(x.device)
    for step in orders.pop():
        if step == 0:
            x.mul_(brightness)
        elif step == 1:
            means = x.mean(dim=(2, 3, 4)).tolist()
            pivots = [sum(w * m for w, m in zip(LUMA, clip_means)) for clip_means in means]  # = mean of the luma plane
            offsets = [(1.0 - d[1]) * v if p.jitter else 0.0 for d, v, p in zip(draws, pivots, params)]
            x.mul_(contrast).add_(torch.tensor(offsets).view(-1, 1, 1, 1, 1).to(x.device))
        elif step == 2:
            x.lerp_(_luma(x), grey_weight)  # saturation * x + (1 - saturation) * grey
        elif any(d[3] != 0.0 for d in draws):
            _rotate_hue(x, [d[3] for d in draws])
        x.clamp_(0.0, 1.0)


def _rotate_hue(x: torch.Tensor, turns: Sequence[float]) -> None:
    """Rotate the hue of clip k of (K, 3, T, H, W) clips by `turns[k]` of a full circle, in place: a
    rotation of the chroma plane in YIQ space (a cheap linear stand-in for an HSV round trip). A turn
    of 0 leaves its clip exactly as it is (an identity matrix, not the YIQ round trip's rounding)."""
    rotations = []
    for turn in turns:
        angle = 2.0 * math.pi * turn
        cos, sin = math.cos(angle), math.sin(angle)
        rotations.append([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrices = _YIQ_TO_RGB @ torch.tensor(rotations) @ _RGB_TO_YIQ
    matrices[torch.tensor([turn == 0.0 for turn in turns])] = torch.eye(3)
    matrices = matrices.to(x.device)
    planes = x.view(len(x), 3, -1)
    planes.copy_(matrices @ planes)


def transforms_from_config(data_cfg, colour_augmentation: bool = True) -> tuple[ClipTransform, ClipTransform]:
    """(training transform, evaluation transform) for a `DataConfig`.

    Pretraining augments colour as configured; fine-tuning passes `colour_augmentation=False`
    (crop and flip only). The evaluation transform is the centre crop, never augmented.
    """
    common = dict(resize=tuple(data_cfg.resize), crop=data_cfg.crop, mean=data_cfg.mean, std=data_cfg.std,
                  modality=data_cfg.modality)
    train = ClipTransform(train=True, flip=data_cfg.flip,
                          color_jitter=data_cfg.color_jitter if colour_augmentation else 0.0,
                          grayscale=data_cfg.grayscale if colour_augmentation else 0.0,
                          blur=data_cfg.blur if colour_augmentation else 0.0, jitter_order=data_cfg.jitter_order,
                          **common)
    evaluate = ClipTransform(train=False, flip=False, color_jitter=0.0, grayscale=0.0, **common)
    return train, evaluate
