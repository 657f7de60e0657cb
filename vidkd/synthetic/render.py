"""Rendering of the synthetic actions: actors, backgrounds, per-clip style, drawing and `render_clip`.

A "group" is an actor (body proportions, clothes, skin, background), shared by every class and
clip of a dataset. Each clip varies position, scale, speed, phase, camera jitter, a moving
distractor, lighting and pixel noise. Random numbers come from generators seeded by
`(seed, group)` and `(seed, class, group, clip)`, so a clip does not change when other clips are
added or removed. A cyclic action runs through the whole video from a random phase; a directed
one happens once, after a random lead-in, at a random speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from vidkd.synthetic.kinematics import (DEFAULT_ACTION_SET, FOREARM, SHIN, THIGH, TORSO, UPPER_ARM, ActionClass,
                                        action_set, skeleton)

SUPERSAMPLE = 2  # draw at 2x and downscale: cheap anti-aliasing
# A directed movement takes 60-94% of the video, after a lead-in of 30-70% of the frames left over:
# every video shows it from start to end, and any 32-frame window of a 96-frame video (a VCOP
# tuple of the CPU presets) sees part of it.
MOVEMENT_SHARE = 0.75


# ----------------------------------------------------------------------------- actors and scenes


@dataclass(frozen=True)
class Actor:
    """What one group shares: body proportions, colours and the room behind the actor."""

    lengths: dict[str, float]
    limb_width: float
    torso_width: float
    head_radius: float
    skin: tuple[int, int, int]
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    hair: tuple[int, int, int]
    background: np.ndarray  # (H + 2m, W + 2m, 3) uint8 at the supersampled size


def _hsv_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float],
                hue: tuple[float, float] = (0.0, 1.0)) -> tuple[int, int, int]:
    hue, sat, val = rng.uniform(*hue), rng.uniform(*saturation), rng.uniform(*value)
    rgb = val * (1 - sat + sat * np.clip(np.abs(np.mod(hue * 6 + np.array([0.0, 4.0, 2.0]), 6) - 3) - 1, 0, 1))
    return tuple(int(c) for c in np.clip(rgb * 255, 0, 255))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Values in [0, 1], smooth over about 1 / cells of the image (bicubic-upsampled noise)."""
    coarse = (rng.random((cells, max(2, cells * width // height))) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured room: two colours mixed by smooth noise, stripes or a gradient."""
    colour_a = np.array(_hsv_colour(rng, (0.05, 0.6), (0.3, 0.9)), np.float32)
    colour_b = np.array(_hsv_colour(rng, (0.05, 0.6), (0.3, 0.9)), np.float32)
    mix = _smooth_noise(rng, height, width, int(rng.integers(3, 7)))
    pattern = int(rng.integers(3))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == 1:  # stripes at a random angle and period, on top of the noise
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.08, 0.2) * width
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period)
        mix = 0.55 * mix + 0.45 * stripes
    elif pattern == 2:  # a floor-to-ceiling gradient with a fainter texture
        mix = 0.6 * ys / height + 0.4 * mix
    detail = _smooth_noise(rng, height, width, int(rng.integers(12, 24))) - 0.5
    image = colour_a * (1 - mix[..., None]) + colour_b * mix[..., None] + 30 * detail[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def make_actor(seed: int, group: int, size: tuple[int, int]) -> Actor:
    """The actor of `group` (1-based): the same for every class and clip of the dataset."""
    rng = np.random.default_rng([seed, 0, group])
    width, height = size
    margin = _jitter_margin(size)
    lengths = {name: nominal * rng.uniform(0.88, 1.12) for name, nominal in
               (("thigh", THIGH), ("shin", SHIN), ("upper_arm", UPPER_ARM), ("forearm", FOREARM),
                ("torso", TORSO))}
    lengths.update(shoulder=0.09 * rng.uniform(0.85, 1.2), hip=0.05 * rng.uniform(0.8, 1.2),
                   neck=0.03, foot=0.05 * rng.uniform(0.8, 1.2))
    thickness = rng.uniform(0.8, 1.25)
    return Actor(
        lengths=lengths,
        limb_width=0.055 * thickness,
        torso_width=0.12 * thickness * rng.uniform(0.85, 1.2),
        head_radius=0.065 * rng.uniform(0.9, 1.15),
        skin=_hsv_colour(rng, (0.25, 0.6), (0.3, 0.95), hue=(0.02, 0.11)),
        shirt=_hsv_colour(rng, (0.3, 0.9), (0.25, 0.95)),
        pants=_hsv_colour(rng, (0.2, 0.8), (0.15, 0.8)),
        hair=_hsv_colour(rng, (0.2, 0.7), (0.05, 0.45)),
        background=_background(rng, (height + 2 * margin) * SUPERSAMPLE, (width + 2 * margin) * SUPERSAMPLE),
    )


def _jitter_margin(size: tuple[int, int]) -> int:
    return max(2, round(0.04 * size[0]))


@dataclass(frozen=True)
class ClipStyle:
    """Everything one clip varies, apart from its actor and action."""

    period: float  # frames per cycle; for a directed action, frames the movement takes
    phase: float  # cycles at frame 0; for a directed action, where in the spare frames it starts (0-1)
    amplitude: float
    center_x: float  # fraction of the width
    ground_y: float  # fraction of the height
    scale: float  # standing height as a fraction of the frame height
    jitter: np.ndarray  # (T, 2) camera translation in supersampled pixels
    distractor: np.ndarray  # (T, 2) centre in output pixels
    distractor_radius: float
    distractor_colour: tuple[int, int, int]
    distractor_round: bool
    distractor_in_front: bool
    gain: float
    noise_sigma: float


def _clip_style(rng: np.random.Generator, action: ActionClass, frames: int, size: tuple[int, int]) -> ClipStyle:
    width, height = size
    margin = _jitter_margin(size) * SUPERSAMPLE
    steps = rng.normal(0, 0.35 * margin / 4, (frames, 2))
    jitter = np.clip(np.cumsum(steps, axis=0) * 0.6, -margin, margin)
    start = rng.uniform([0.0, 0.1], [1.0, 0.7]) * (width, height)
    heading = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0.4, 1.4) * height / 96 * np.array([np.cos(heading), np.sin(heading)])
    path = start + np.arange(frames)[:, None] * velocity
    span = np.array([width, height], np.float64)
    path = span - np.abs(np.mod(path, 2 * span) - span)  # bounce off the frame edges
    return ClipStyle(
        period=(action.period if action.cyclic else MOVEMENT_SHARE * frames) * rng.uniform(0.8, 1.25),
        phase=rng.random(),
        amplitude=rng.uniform(0.85, 1.1),
        center_x=rng.uniform(0.3, 0.7) if action.cyclic else rng.uniform(0.45, 0.55),  # travelling needs room
        ground_y=rng.uniform(0.88, 0.97),
        scale=rng.uniform(0.8, 0.95),  # large: the CPU presets see the frame at 48x64
        jitter=jitter,
        distractor=path,
        distractor_radius=rng.uniform(0.04, 0.08) * height,
        distractor_colour=_hsv_colour(rng, (0.3, 1.0), (0.3, 1.0)),
        distractor_round=bool(rng.random() < 0.5),
        distractor_in_front=bool(rng.random() < 0.5),
        gain=rng.uniform(0.85, 1.12),
        noise_sigma=rng.uniform(1.5, 5.0),
    )


def _draw_segment(draw: ImageDraw.ImageDraw, a, b, width: float, colour) -> None:
    draw.line([tuple(a), tuple(b)], fill=colour, width=max(1, round(width)))
    r = width / 2
    for x, y in (a, b):  # round caps so joints look like joints
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _draw_figure(draw: ImageDraw.ImageDraw, joints: dict[str, np.ndarray], t: int, actor: Actor,
                 to_px: Callable[[np.ndarray], np.ndarray], unit: float) -> None:
    j = {name: to_px(value[t]) for name, value in joints.items()}
    limb, torso = actor.limb_width * unit, actor.torso_width * unit
    _draw_segment(draw, j["hip"][0], j["hip"][1], limb * 1.3, actor.pants)
    for side in (0, 1):
        _draw_segment(draw, j["hip"][side], j["knee"][side], limb * 1.15, actor.pants)
        _draw_segment(draw, j["knee"][side], j["ankle"][side], limb, actor.pants)
        _draw_segment(draw, j["ankle"][side], j["toe"][side], limb * 0.8, actor.hair)
    _draw_segment(draw, j["pelvis"], j["neck"], torso, actor.shirt)
    _draw_segment(draw, j["shoulder"][0], j["shoulder"][1], limb * 1.2, actor.shirt)
    head = j["head"]
    r = actor.head_radius * unit
    draw.ellipse([head[0] - r, head[1] - r * 1.15, head[0] + r, head[1] + r * 1.1], fill=actor.skin)
    draw.chord([head[0] - r, head[1] - r * 1.15, head[0] + r, head[1] + r], 180, 360, fill=actor.hair)
    for side in (0, 1):
        _draw_segment(draw, j["shoulder"][side], j["elbow"][side], limb, actor.shirt)
        _draw_segment(draw, j["elbow"][side], j["wrist"][side], limb * 0.85, actor.skin)
        _draw_segment(draw, j["wrist"][side], j["wrist"][side], limb * 1.25, actor.skin)


def _draw_distractor(draw: ImageDraw.ImageDraw, style: ClipStyle, t: int, offset: np.ndarray) -> None:
    x, y = style.distractor[t] * SUPERSAMPLE + offset
    r = style.distractor_radius * SUPERSAMPLE
    box = [x - r, y - r, x + r, y + r]
    if style.distractor_round:
        draw.ellipse(box, fill=style.distractor_colour)
    else:
        draw.rectangle([x - r, y - 0.6 * r, x + r, y + 0.6 * r], fill=style.distractor_colour)


def _timeline(action: ActionClass, style: ClipStyle, frames: int) -> np.ndarray:
    """Per frame: the cycle phase of a cyclic action, or the progress through a directed one (0
    during a lead-in of 30-70% of the spare frames, rising to 1, then 1 to the end)."""
    if action.cyclic:
        return np.arange(frames) / style.period + style.phase
    lead_in = (0.3 + 0.4 * style.phase) * (frames - style.period)
    return np.clip((np.arange(frames) - lead_in) / style.period, 0.0, 1.0)


def _clip_motion(class_index: int, group: int, clip: int, frames: int, size: tuple[int, int], seed: int,
                 actor: Actor, actions: str) -> tuple[np.random.Generator, ClipStyle, dict[str, np.ndarray]]:
    """The clip's generator (to draw on from), style and joint trajectories."""
    action = action_set(actions)[class_index]
    rng = np.random.default_rng([seed, 1, class_index, group, clip])
    style = _clip_style(rng, action, frames, size)
    pose = action.pose(_timeline(action, style, frames), rng).exaggerate(style.amplitude)
    return rng, style, skeleton(pose, actor)


def clip_joints(class_index: int, group: int, clip: int, frames: int = 96, size: tuple[int, int] = (128, 96),
                seed: int = 0, actions: str = DEFAULT_ACTION_SET) -> dict[str, np.ndarray]:
    """The joint positions (T, ..., 2), in body units, that `render_clip` draws for the same arguments."""
    return _clip_motion(class_index, group, clip, frames, size, seed, make_actor(seed, group, size), actions)[2]


def render_clip(class_index: int, group: int, clip: int, frames: int = 96, size: tuple[int, int] = (128, 96),
                seed: int = 0, actor: Actor | None = None, actions: str = DEFAULT_ACTION_SET) -> Iterator[np.ndarray]:
    """Yield the frames (H, W, 3) uint8 of one video: class `class_index` (0-based index into the
    action set `actions`, e.g. CLASS_NAMES), actor `group` and clip `clip` (both 1-based)."""
    actor = actor or make_actor(seed, group, size)
    rng, style, joints = _clip_motion(class_index, group, clip, frames, size, seed, actor, actions)

    width, height = size
    margin = _jitter_margin(size) * SUPERSAMPLE
    unit = style.scale * height * SUPERSAMPLE  # pixels per body unit
    origin = np.array([style.center_x * width, style.ground_y * height]) * SUPERSAMPLE
    background = Image.fromarray(actor.background)
    noise_bank = rng.normal(0, style.noise_sigma, (4, height + 8, width + 8, 3)).astype(np.float32)

    for t in range(frames):
        shift = style.jitter[t]
        ox, oy = int(round(margin + shift[0])), int(round(margin + shift[1]))
        canvas = background.crop((ox, oy, ox + width * SUPERSAMPLE, oy + height * SUPERSAMPLE))
        draw = ImageDraw.Draw(canvas)
        # The camera moves, so the scene moves the other way by the part the crop did not absorb.
        scene = np.array([margin - ox, margin - oy], dtype=np.float64)

        def to_px(point: np.ndarray) -> np.ndarray:
            return origin + scene + np.stack([point[..., 0], -point[..., 1]], -1) * unit

        if not style.distractor_in_front:
            _draw_distractor(draw, style, t, scene)
        _draw_figure(draw, joints, t, actor, to_px, unit)
        if style.distractor_in_front:
            _draw_distractor(draw, style, t, scene)
        frame = np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32)
        nx, ny = rng.integers(0, 9, size=2)
        frame = frame * style.gain + noise_bank[t % 4, ny:ny + height, nx:nx + width]
        yield np.clip(frame, 0, 255).astype(np.uint8)
