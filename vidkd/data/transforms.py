"""Clip-consistent augmentation in plain PyTorch: one set of random parameters per clip.

Order of operations (train): resize every frame to `resize` (H, W; bilinear on uint8, no
antialiasing, or with `antialias=True` antialiased as PIL's resize) -> random `crop` x `crop`
window -> horizontal flip (p=0.5) -> scale to [0, 1] -> colour jitter (probability
`color_jitter`; brightness, contrast and saturation factors in [0.6, 1.4], hue shift in
[-0.1, 0.1] of a turn; in that order, or in a random order per clip as torchvision's
ColorJitter with `jitter_order="random"`) -> grayscale (probability `grayscale`) -> Gaussian blur
(probability `blur`, standard deviation uniform in [0.1, 2] pixels, as PCL's GaussianBlur) ->
normalise with mean/std. Eval: resize -> centre crop -> normalise.

Two styles of colour jitter (`jitter_style`), both with the same draws:
- "clip" (default): float values in [0, 1]; the contrast pivot is the mean grey of the whole clip;
  hue is a rotation of the chroma plane in YIQ space.
- "pil": the reference's torchvision ColorJitter on PIL images, frame by frame, reproduced
  bit for bit in batched torch: every step works on 8-bit levels as PIL does (`Image.blend`:
  `in1 + f * (in2 - in1)` in float32, truncated and clipped to 0..255); brightness blends with
  black, contrast with the frame's own pivot `int(mean(L) + 0.5)` (L = PIL's "L" conversion,
  `(299 R + 587 G + 114 B) / 1000` in its 16-bit fixed point), saturation with the frame's L image;
  hue converts to PIL's 8-bit HSV, adds `int(hue * 255)` to H modulo 256 and converts back (PIL's
  float/double arithmetic emulated). Grayscale is then PIL's "L" conversion too; blur as "clip".

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

from vidkd.config import KINETICS_MEAN, KINETICS_STD  # the default of every ClipTransform

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
_RGB_TO_YIQ = torch.tensor([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

MODALITIES = ("rgb", "residual", "residual_rescaled")
BLUR_SIGMA = (0.1, 2.0)  # PCL's GaussianBlur: sigma uniform in this range (pixels)
JITTER_STYLES = ("clip", "pil")
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


@dataclass(frozen=True)
class ClipTransform:
    """uint8 frames (T, H, W, 3) -> normalised float tensor (C, T, crop, crop).

    Training draws a random crop, flip, colour jitter (probability `color_jitter`), grayscale and
    blur per clip (`sample_params`) and applies them to every frame; evaluation takes the centre crop.
    """

    resize: tuple[int, int] | None = (128, 171)  # (height, width) before cropping; None keeps the frame size
    crop: int = 112
    train: bool = True
    flip: bool = True
    color_jitter: float = 0.8  # probability of a colour jitter
    grayscale: float = 0.2  # probability of grayscale
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    modality: str = "rgb"  # one of MODALITIES
    blur: float = 0.0  # probability of a Gaussian blur
    jitter_order: str = "fixed"  # "random": the four colour changes in a random order per clip
    antialias: bool = False  # antialiased resize (PIL's)
    jitter_style: str = "clip"  # one of JITTER_STYLES

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.jitter_order not in ("fixed", "random"):
            raise ValueError(f"jitter_order must be 'fixed' or 'random', got {self.jitter_order!r}")
        if self.jitter_style not in JITTER_STYLES:
            raise ValueError(f"jitter_style must be one of {', '.join(JITTER_STYLES)}, got {self.jitter_style!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got {self.mean} and {self.std}")
        resize = (int(self.resize[0]), int(self.resize[1])) if self.resize else None
        normalised = {"resize": resize, "crop": int(self.crop), "color_jitter": float(self.color_jitter),
                      "grayscale": float(self.grayscale), "blur": float(self.blur), "antialias": bool(self.antialias),
                      "mean": tuple(float(v) for v in self.mean), "std": tuple(float(v) for v in self.std)}
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if resize and (self.crop > resize[0] or self.crop > resize[1]):
            raise ValueError(f"crop {self.crop} is larger than the resized frame {resize}")

    @property
    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as tensors over (C, T, H, W)."""
        return (torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1, 1),
                torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1, 1))

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
        if self.jitter_style == "pil":  # on 8-bit levels (float frames rounded to them), as PIL
            levels = planar.to(torch.float32)
            if planar.dtype != torch.uint8:
                levels.clamp_(0.0, 255.0).round_()
            _pil_color_jitter(levels, params)
            for clip, p in zip(levels, params):
                if p.grayscale:
                    clip.copy_(_pil_luma(clip))
            x = levels.div_(255.0)
        elif planar.dtype == torch.uint8:
            x = torch.div(planar, 255.0)
        else:
            x = planar.to(torch.float32).div_(255.0).clamp_(0.0, 1.0)
        if self.jitter_style != "pil":
            _color_jitter(x, params)
        for clip, p in zip(x, params):
            if p.grayscale and self.jitter_style != "pil":
                clip.copy_(_luma(clip))  # broadcast over the three channels
            if p.blur_sigma is not None:
                clip.copy_(gaussian_blur(clip, p.blur_sigma))
        mean, std = self.normalisation
        x.sub_(mean.to(x.device)).div_(std.to(x.device))
        return self.to_modality(x) if modality else x

    def _crop(self, frames: np.ndarray | torch.Tensor, params: ClipParams) -> torch.Tensor:
        """The (T, crop, crop, 3) window of `params`, flipped if drawn, in the frames' dtype."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(x.shape)}")
        if self.resize and tuple(x.shape[1:3]) != self.resize:
            x = resize_frames(x, self.resize, self.antialias)
        x = x[:, params.top:params.top + self.crop, params.left:params.left + self.crop]
        return x.flip(2) if params.flip else x  # on the uint8 crop: a quarter of the bytes of the float clip

    def to_modality(self, clip: torch.Tensor) -> torch.Tensor:
        """RGB stays; the residuals become frame differences along T (dim -3 of (..., C, T, H, W))."""
        return to_modality(clip, self.modality)


def resize_frames(frames: torch.Tensor, size: Sequence[int], antialias: bool = False) -> torch.Tensor:
    """(T, H, W, 3) frames -> (T, size[0], size[1], 3), bilinear (half-pixel centres), in their dtype.

    `antialias=True` filters over the source footprint when downscaling, as PIL's resize does
    (torch's uint8 kernel follows PIL's fixed-point one: within one level of it). The frames go
    in as a channels-last view of (T, 3, H, W): torch's uint8 kernels resize it about 5x faster
    than float. The loaders' `preload` resizes with this function too, so its frames are these."""
    x = F.interpolate(frames.permute(0, 3, 1, 2), size=(int(size[0]), int(size[1])), mode="bilinear",
                      align_corners=False, antialias=bool(antialias))
    return x.permute(0, 2, 3, 1)


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


def _pil_luma(levels: torch.Tensor) -> torch.Tensor:
    """PIL's "L" of (..., 3, T, H, W) 8-bit levels (floats holding integers), shaped (..., 1, T, H, W):
    `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`. Exact in float32: no partial sum reaches 2**24."""
    r, g, b = (levels[..., c:c + 1, :, :, :] for c in range(3))
    return torch.mul(r, 19595.0).add_(torch.mul(g, 38470.0)).add_(torch.mul(b, 7471.0)).add_(32768.0) \
        .div_(65536.0).floor_()


def _pil_blend(image: torch.Tensor, degenerate: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    """PIL's `Image.blend(degenerate, image, factor)` on levels, in place: `degenerate + factor *
    (image - degenerate)` in float32 (the factor a C float), clipped to 0..255 and truncated."""
    if isinstance(degenerate, float):  # brightness: blended with black
        image.mul_(factor)
    else:
        image.sub_(degenerate).mul_(factor).add_(degenerate)
    return image.clamp_(0.0, 255.0).floor_()


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round() of non-negative values (torch.round rounds half to even)."""
    low = torch.floor(x)
    return low.add_((x - low).ge_(0.5).to(x.dtype))


def _pil_rgb_to_hsv(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's 8-bit RGB -> (H, S) of integer-valued float64 tensors (V is max(R, G, B)), element by
    element as its C code computes them: each value rounded where PIL rounds it, to a C float
    (float32) or double. Builds the tables of `_PilHueTables`."""
    f32, f64 = torch.float32, torch.float64
    maxc = torch.maximum(torch.maximum(r, g), b)
    cr = (maxc - torch.minimum(torch.minimum(r, g), b)).to(f32)
    grey = cr == 0
    cr = cr.masked_fill(grey, 1.0)  # no division by zero; grey pixels take H = S = 0
    sat = cr / maxc.to(f32).clamp(min=1.0)
    rc, gc, bc = ((maxc - c).to(f32) / cr for c in (r, g, b))
    hue = torch.where(r == maxc, bc - gc,
                      torch.where(g == maxc, (rc.to(f64) + 2.0 - bc.to(f64)).to(f32),
                                  (gc.to(f64) + 4.0 - rc.to(f64)).to(f32)))
    hue = torch.fmod(hue.to(f64) / 6.0 + 1.0, 1.0).to(f32)
    h = (hue.to(f64) * 255.0).trunc_().clamp_(0.0, 255.0).masked_fill_(grey, 0.0)
    s = (sat.to(f64) * 255.0).trunc_().clamp_(0.0, 255.0).masked_fill_(grey, 0.0)
    return h, s


class _PilHueTables:
    """PIL's HSV round trip as lookups (made once per device from `_pil_rgb_to_hsv` and PIL's
    hsv2rgb arithmetic, exact for every input):
    - hue[(R - G + 255) * 511 + (R - B + 255)]: H depends on the channel differences only;
    - sat[V * 256 + C]: S from V = max and the chroma C = max - min;
    - low[V * 256 + S]: hsv2rgb's p (the smallest channel out);
    - keep[S * 256 + H]: the factor of V in the middle channel out (its q in odd sectors, t in even
      ones, as PIL computes them in double), rounded half away from zero after the product;
    - shift[channel][H]: where R, G, B find their value in the packed V | middle << 8 | p << 16 of
      H's sector (PIL's switch over the sectors)."""

    def __init__(self, device: torch.device):
        f32, f64 = torch.float32, torch.float64
        a, c = torch.meshgrid(torch.arange(-255, 256, dtype=f64), torch.arange(-255, 256, dtype=f64), indexing="ij")
        r = torch.maximum(torch.maximum(a, c), torch.zeros_like(a))  # R - G = a, R - B = c, min(R, G, B) = 0
        self.hue = _pil_rgb_to_hsv(r, r - a, r - c)[0].flatten().to(torch.int32)
        v, chroma = torch.meshgrid(torch.arange(256, dtype=f64), torch.arange(256, dtype=f64), indexing="ij")
        valid = chroma <= v
        self.sat = _pil_rgb_to_hsv(v, torch.where(valid, v - chroma, v), v)[1].flatten().to(torch.int32)
        fs = (torch.arange(256, dtype=f64) / 255.0).to(f32)  # by S
        self.low = _round_half_away(v * (1.0 - fs.to(f64)).view(1, 256)).clamp_(0, 255).flatten().to(torch.int32)
        sector = torch.arange(256, dtype=f64) * 6.0 / 255.0  # by H
        i = torch.floor(sector)
        f = (sector - i).to(f32)
        keep_q = 1.0 - (fs.view(256, 1) * f.view(1, 256)).to(f64)
        keep_t = 1.0 - fs.to(f64).view(256, 1) * (1.0 - f.to(f64)).view(1, 256)
        odd = (torch.remainder(i, 6.0).to(torch.int64) % 2 == 1).view(1, 256)
        self.keep = torch.where(odd, keep_q, keep_t).flatten()
        roles = torch.tensor([[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1]])  # PIL's switch
        self.shift = (8 * roles[torch.remainder(i, 6.0).to(torch.int64)]).to(torch.int32).T.contiguous()
        for name in ("hue", "sat", "low", "keep", "shift"):
            setattr(self, name, getattr(self, name).to(device))

    _cache: dict[str, _PilHueTables] = {}

    @classmethod
    def on(cls, device: torch.device) -> _PilHueTables:
        key = str(device)
        if key not in cls._cache:
            cls._cache[key] = cls(device)
        return cls._cache[key]


def _pil_adjust_hue(levels: torch.Tensor, shifts: torch.Tensor) -> None:
    """torchvision's `adjust_hue` on PIL images, on (K, 3, T, H, W) levels in place: PIL's RGB -> HSV
    (8-bit H, S, V), H + shifts[k] modulo 256 (numpy's uint8 wrap-around), PIL's HSV -> RGB; PIL's
    result bit for bit (its float and double arithmetic is in the tables of `_PilHueTables`)."""
    tables = _PilHueTables.on(levels.device)
    r, g, b = levels.to(torch.int32).unbind(1)  # (K, T, H, W) each
    shape = r.shape

    def look(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(table, 0, index.view(-1)).view(shape)  # int32 indices: the fastest lookup

    v = torch.maximum(torch.maximum(r, g), b)
    chroma = v - torch.minimum(torch.minimum(r, g), b)
    h = look(tables.hue, (r - g).mul_(511).add_(r - b).add_(255 * 512))
    s = look(tables.sat, chroma.add_(v, alpha=256))
    h.add_(shifts.to(device=levels.device, dtype=torch.int32).view(-1, 1, 1, 1)).bitwise_and_(255)
    low = look(tables.low, v * 256 + s)
    # C's round(v * keep) of every (V, S, H): floor(x + 0.5) gives it exactly (checked for all 2**24)
    middle = look(tables.keep, s.mul_(256).add_(h)).mul_(v).add_(0.5).floor_().to(torch.int32)
    packed = v.add_(middle.bitwise_left_shift_(8)).add_(low.bitwise_left_shift_(16))  # V | middle | p, a byte each
    for channel in range(3):
        levels[:, channel].copy_(packed.bitwise_right_shift(look(tables.shift[channel], h)).bitwise_and_(255))


def _pil_color_jitter(levels: torch.Tensor, params: Sequence[ClipParams]) -> None:
    """torchvision's ColorJitter on PIL images, frame by frame, on (K, 3, T, H, W) levels in place:
    clip k as `params[k]` draws it (the same factors for all its frames), the four steps in its
    order, each one 8-bit as PIL's. Clips that share an order take each step together."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, p in enumerate(params):
        if p.jitter is not None:
            groups.setdefault(p.jitter_order, []).append(k)
    for order, clips in groups.items():
        whole = len(clips) == len(levels)
        x = levels if whole else levels[torch.tensor(clips, device=levels.device)]
        draws = [params[k].jitter for k in clips]
        brightness, contrast, saturation = torch.tensor(  # C floats, as PIL's blend takes its factor
            [[d[0] for d in draws], [d[1] for d in draws], [d[2] for d in draws]],
            dtype=torch.float32).view(3, -1, 1, 1, 1, 1).to(levels.device)
        shifts = torch.tensor([int(d[3] * 255) % 256 for d in draws], device=levels.device)  # numpy's uint8 cast
        for step in order:
            if step == 0:
                _pil_blend(x, 0.0, brightness)
            elif step == 1:  # each frame's own pivot: int(mean of its L image + 0.5)
                luma = _pil_luma(x).to(torch.int64)
                n = luma.shape[-1] * luma.shape[-2]
                pivot = (luma.sum(dim=(-2, -1), keepdim=True) * 2 + n).div_(2 * n, rounding_mode="floor")
                _pil_blend(x, pivot.to(torch.float32), contrast)
            elif step == 2:
                _pil_blend(x, _pil_luma(x), saturation)
            else:
                _pil_adjust_hue(x, shifts)
        if not whole:
            levels[torch.tensor(clips, device=levels.device)] = x


def transforms_from_config(data_cfg, colour_augmentation: bool = True) -> tuple[ClipTransform, ClipTransform]:
    """(training transform, evaluation transform) for a `DataConfig`.

    Pretraining augments colour as configured; fine-tuning passes `colour_augmentation=False`
    (crop and flip only). The evaluation transform is the centre crop, never augmented.
    """
    common = dict(resize=tuple(data_cfg.resize), crop=data_cfg.crop, mean=data_cfg.mean, std=data_cfg.std,
                  modality=data_cfg.modality, antialias=getattr(data_cfg, "resize_antialias", False))
    train = ClipTransform(train=True, flip=data_cfg.flip,
                          color_jitter=data_cfg.color_jitter if colour_augmentation else 0.0,
                          grayscale=data_cfg.grayscale if colour_augmentation else 0.0,
                          blur=data_cfg.blur if colour_augmentation else 0.0, jitter_order=data_cfg.jitter_order,
                          jitter_style=getattr(data_cfg, "jitter_style", "clip"), **common)
    evaluate = ClipTransform(train=False, flip=False, color_jitter=0.0, grayscale=0.0, **common)
    return train, evaluate
