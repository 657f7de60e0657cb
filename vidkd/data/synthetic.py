"""A built-in synthetic human-action dataset, written as real video files in the UCF101 layout.

Every video shows one articulated stick figure (torso, head, two-segment arms and legs) that
performs an action given by joint-angle trajectories. Classes differ only in how the joints
move: all actors, colours, backgrounds and positions are shared by every class, every class
starts from (and most return to) the same neutral pose, and no class has a mirror-image twin,
so a single frame is ambiguous and a horizontal flip keeps the label.

A "group" is an actor (body proportions, clothes, skin, background), as in UCF101, so train and
test never share a group. Each clip varies position, scale, speed, phase, camera jitter, a
moving distractor, lighting and pixel noise. Random numbers come from generators seeded by
`(seed, group)` and `(seed, class, group, clip)`, so a clip does not change when other clips are
added or removed, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from vidkd.data.video import write_video
from vidkd.errors import DatasetError

FPS = 25
SUPERSAMPLE = 2  # draw at 2x and downscale: cheap anti-aliasing
FORMAT_VERSION = 1  # bump when the rendering changes, so old datasets are not reused
TEST_FRACTION = 0.25  # UCF101 tests 7 of 25 groups per split

# Nominal body lengths in "body units" (standing height is about 1).
THIGH, SHIN, UPPER_ARM, FOREARM, TORSO = 0.25, 0.25, 0.16, 0.15, 0.30
NEUTRAL_ARM, NEUTRAL_FOREARM, NEUTRAL_LEG = 0.15, 0.10, 0.08


# ----------------------------------------------------------------------------- poses


@dataclass
class Pose:
    """Joint trajectories over T frames. Angles are radians from straight down, positive away
    from the body's midline; (T, 2) arrays hold the figure's [left (-x), right (+x)] sides."""

    tilt: np.ndarray  # (T,) lateral torso lean, positive towards +x
    torso: np.ndarray  # (T,) torso length scale (< 1: bending towards the camera)
    lift: np.ndarray  # (T,) height of the feet above the ground (jumps)
    arm: np.ndarray  # (T, 2) upper-arm angle, in the torso's frame
    forearm: np.ndarray  # (T, 2) absolute forearm angle, in the torso's frame
    arm_scale: np.ndarray  # (T, 2) upper-arm and forearm length scale (foreshortening)
    leg: np.ndarray  # (T, 2) thigh angle
    shin: np.ndarray  # (T, 2) absolute shin angle
    thigh_scale: np.ndarray  # (T, 2) thigh length scale (knee lifted towards the camera)

    @classmethod
    def neutral(cls, t: int) -> "Pose":
        one, two = np.ones(t), np.ones((t, 2))
        return cls(tilt=0 * one, torso=one.copy(), lift=0 * one, arm=NEUTRAL_ARM * two,
                   forearm=NEUTRAL_FOREARM * two, arm_scale=two.copy(), leg=NEUTRAL_LEG * two,
                   shin=NEUTRAL_LEG * two, thigh_scale=two.copy())

    def exaggerate(self, amount: float) -> "Pose":
        """Scale every deviation from the neutral pose (a clip's movement amplitude)."""
        neutral = Pose.neutral(len(self.tilt))
        fields = {name: getattr(neutral, name) + amount * (value - getattr(neutral, name))
                  for name, value in vars(self).items()}
        return Pose(**fields)


def _bump(u: np.ndarray, center: float, width: float) -> np.ndarray:
    """Raised-cosine bump on the cycle phase u (cycles), 1 at `center`, 0 beyond width / 2."""
    d = np.mod(u - center + 0.5, 1.0) - 0.5
    return np.where(np.abs(d) < width / 2, 0.5 * (1 + np.cos(2 * np.pi * d / width)), 0.0)


def _plateau(u: np.ndarray) -> np.ndarray:
    """0 at the start of each cycle, rising smoothly to 1 and staying there most of the cycle."""
    x = np.clip(0.8 * (1 - np.cos(2 * np.pi * u)), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _reach(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics: (upper-arm, forearm) angles that put the hand at (x, y)
    relative to the shoulder (x outwards, y up), choosing the lower elbow."""
    d = np.clip(np.hypot(x, y), 1e-3, UPPER_ARM + FOREARM - 1e-3)
    towards = np.arctan2(x, -y)
    bend = np.arccos(np.clip((UPPER_ARM**2 + d**2 - FOREARM**2) / (2 * UPPER_ARM * d), -1, 1))
    candidates = []
    for arm in (towards + bend, towards - bend):
        elbow_x, elbow_y = UPPER_ARM * np.sin(arm), -UPPER_ARM * np.cos(arm)
        candidates.append((arm, np.arctan2(x - elbow_x, -(y - elbow_y)), elbow_y))
    (a1, f1, y1), (a2, f2, y2) = candidates
    lower_first = y1 <= y2
    return np.where(lower_first, a1, a2), np.where(lower_first, f1, f2)


def _blend(neutral: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return neutral + weight * (target - neutral)


def _wave(u, rng):
    p = Pose.neutral(len(u))
    up = _plateau(u)
    side = int(rng.integers(2))  # either hand: a flipped wave is still a wave
    p.arm[:, side] = _blend(NEUTRAL_ARM, 2.4, up)
    p.forearm[:, side] = _blend(NEUTRAL_FOREARM, 2.75 + 0.4 * np.sin(2 * np.pi * 4 * u), up)
    return p


def _clap(u, rng):
    p = Pose.neutral(len(u))
    ready = _plateau(u)
    together = 0.5 * (1 - np.cos(2 * np.pi * 3 * u))
    arm, forearm = _reach(0.14 - 0.225 * together, -0.12 + 0 * u)
    for side in (0, 1):
        p.arm[:, side] = _blend(NEUTRAL_ARM, arm, ready)
        p.forearm[:, side] = _blend(NEUTRAL_FOREARM, forearm, ready)
    return p


def _squat(u, rng):
    p = Pose.neutral(len(u))
    down = 0.5 * (1 - np.cos(2 * np.pi * u))
    for side in (0, 1):
        p.leg[:, side] = NEUTRAL_LEG + 0.6 * down
        p.shin[:, side] = NEUTRAL_LEG - 0.35 * down
        p.thigh_scale[:, side] = 1 - 0.5 * down
        p.arm[:, side] = NEUTRAL_ARM + 0.35 * down  # arms reach forward, towards the camera
        p.forearm[:, side] = NEUTRAL_FOREARM + 0.4 * down
        p.arm_scale[:, side] = 1 - 0.7 * down
    return p


def _jump(u, rng):
    p = Pose.neutral(len(u))
    crouch = _bump(u, 0.15, 0.25) + _bump(u, 0.72, 0.22)
    air = _bump(u, 0.43, 0.32)
    swing = _bump(u, 0.43, 0.45)
    p.lift = 0.22 * air
    for side in (0, 1):
        p.leg[:, side] = NEUTRAL_LEG + 0.45 * crouch
        p.shin[:, side] = NEUTRAL_LEG - 0.3 * crouch
        p.thigh_scale[:, side] = 1 - 0.35 * crouch
        p.arm[:, side] = NEUTRAL_ARM + 2.5 * swing
        p.forearm[:, side] = NEUTRAL_FOREARM + 2.6 * swing
    return p


def _punch(u, rng):
    p = Pose.neutral(len(u))
    guard = _plateau(u)
    for side, center in ((0, 0.35), (1, 0.65)):
        out = _bump(u, center, 0.24)
        arm, forearm = _reach(-0.02 + 0.32 * out, -0.02 + 0.03 * out)
        p.arm[:, side] = _blend(NEUTRAL_ARM, arm, guard)
        p.forearm[:, side] = _blend(NEUTRAL_FOREARM, forearm, guard)
    return p


def _kick(u, rng):
    p = Pose.neutral(len(u))
    kicks = (_bump(u, 0.25, 0.4), _bump(u, 0.75, 0.4))
    for side, kick in enumerate(kicks):
        p.leg[:, side] = NEUTRAL_LEG + 1.15 * kick
        p.shin[:, side] = NEUTRAL_LEG + 1.2 * kick
    balance = kicks[0] + kicks[1]
    p.arm[:] = (NEUTRAL_ARM + 1.0 * balance)[:, None]
    p.forearm[:] = (NEUTRAL_FOREARM + 1.1 * balance)[:, None]
    p.tilt = 0.25 * (kicks[0] - kicks[1])  # lean away from the kicking leg
    return p


def _run_in_place(u, rng):
    p = Pose.neutral(len(u))
    knees = (_bump(u, 0.25, 0.5), _bump(u, 0.75, 0.5))
    p.lift = 0.03 * np.abs(np.sin(2 * np.pi * 2 * u))
    for side, knee in enumerate(knees):
        p.thigh_scale[:, side] = 1 - 0.65 * knee  # the thigh points at the camera
        p.leg[:, side] = NEUTRAL_LEG + 0.15 * knee
        opposite = knees[1 - side]  # arms pump against the legs
        arm, forearm = _reach(0.0 + 0 * u, -0.22 + 0.14 * opposite)
        ready = np.maximum(_plateau(u), knees[0] + knees[1])
        p.arm[:, side] = _blend(NEUTRAL_ARM, arm, np.clip(ready, 0, 1))
        p.forearm[:, side] = _blend(NEUTRAL_FOREARM, forearm, np.clip(ready, 0, 1))
    return p


def _bend(u, rng):
    p = Pose.neutral(len(u))
    down = _plateau(u)
    p.torso = 1 - 0.65 * down
    p.arm[:] = (NEUTRAL_ARM - 0.1 * down)[:, None]
    p.forearm[:] = (NEUTRAL_FOREARM - 0.08 * down)[:, None]
    return p


def _jumping_jack(u, rng):
    p = Pose.neutral(len(u))
    open_ = 0.5 * (1 - np.cos(2 * np.pi * u))
    p.lift = 0.07 * np.sin(2 * np.pi * u) ** 2
    for side in (0, 1):
        p.arm[:, side] = NEUTRAL_ARM + 2.75 * open_
        p.forearm[:, side] = NEUTRAL_FOREARM + 2.95 * open_
        p.leg[:, side] = NEUTRAL_LEG + 0.38 * open_
        p.shin[:, side] = NEUTRAL_LEG + 0.38 * open_
    return p


def _arm_circle(u, rng):
    p = Pose.neutral(len(u))
    out = _plateau(u)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    turn = 2 * np.pi * 4 * u
    for side in (0, 1):
        p.arm[:, side] = _blend(NEUTRAL_ARM, 1.5 + 0.35 * np.sin(turn), out)
        p.forearm[:, side] = _blend(NEUTRAL_FOREARM, 1.5 + 0.35 * np.sin(turn), out)
        p.arm_scale[:, side] = 1 - out * 0.15 * (1 + direction * np.cos(turn))
    return p


def _side_bend(u, rng):
    p = Pose.neutral(len(u))
    lean = np.sin(2 * np.pi * u)
    p.tilt = 0.42 * lean
    for side, over in ((0, np.maximum(lean, 0)), (1, np.maximum(-lean, 0))):
        p.arm[:, side] = NEUTRAL_ARM + 2.6 * over  # the arm away from the lean goes overhead
        p.forearm[:, side] = NEUTRAL_FOREARM + 3.1 * over
    return p


def _lunge(u, rng):
    p = Pose.neutral(len(u))
    lunges = (_bump(u, 0.25, 0.45), _bump(u, 0.75, 0.45))
    for side in (0, 1):
        mine, other = lunges[side], lunges[1 - side]
        p.leg[:, side] = NEUTRAL_LEG + 1.0 * mine + 0.6 * other  # bent out, or straight and wide
        p.shin[:, side] = NEUTRAL_LEG + 0.05 * mine + 0.6 * other
        reach = mine + other
        p.arm[:, side] = NEUTRAL_ARM + 0.3 * reach
        p.forearm[:, side] = NEUTRAL_FOREARM + 0.35 * reach
        p.arm_scale[:, side] = 1 - 0.6 * reach
    return p


@dataclass(frozen=True)
class ActionClass:
    name: str
    period: int  # frames per cycle at 25 fps, before the per-clip speed change
    pose: Callable[[np.ndarray, np.random.Generator], Pose]


ACTIONS: tuple[ActionClass, ...] = (
    ActionClass("Wave", 48, _wave),
    ActionClass("Clap", 48, _clap),
    ActionClass("Squat", 36, _squat),
    ActionClass("Jump", 36, _jump),
    ActionClass("Punch", 40, _punch),
    ActionClass("Kick", 40, _kick),
    ActionClass("RunInPlace", 36, _run_in_place),
    ActionClass("Bend", 48, _bend),
    ActionClass("JumpingJack", 28, _jumping_jack),
    ActionClass("ArmCircle", 48, _arm_circle),
    ActionClass("SideBend", 48, _side_bend),
    ActionClass("Lunge", 44, _lunge),
)
CLASS_NAMES: tuple[str, ...] = tuple(action.name for action in ACTIONS)


def class_names(num_classes: int) -> list[str]:
    """The first `num_classes` class names (the label order of classInd.txt)."""
    if not 2 <= num_classes <= len(ACTIONS):
        raise DatasetError(f"--classes must be between 2 and {len(ACTIONS)} (the synthetic actions "
                           f"defined: {', '.join(CLASS_NAMES)}); got {num_classes}")
    return list(CLASS_NAMES[:num_classes])


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


def _rotate(x: np.ndarray, y: np.ndarray, tilt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate body-frame offsets so that 'up' leans by `tilt` towards +x."""
    return x * np.cos(tilt) + y * np.sin(tilt), -x * np.sin(tilt) + y * np.cos(tilt)


def _skeleton(pose: Pose, actor: Actor) -> dict[str, np.ndarray]:
    """Joint positions (T, 2) in body units, y up, with the lowest foot on the ground at y=0."""
    L = actor.lengths
    side_sign = np.array([-1.0, 1.0])
    joints: dict[str, np.ndarray] = {}

    def limb(start, angle, length, tilt=None):
        dx, dy = side_sign * np.sin(angle) * length, -np.cos(angle) * length
        if tilt is not None:
            dx, dy = _rotate(dx, dy, tilt[:, None])
        return start[0] + dx, start[1] + dy

    hip = (side_sign * L["hip"] + 0 * pose.leg, 0 * pose.leg)
    knee = limb(hip, pose.leg, L["thigh"] * pose.thigh_scale)
    ankle = limb(knee, pose.shin, L["shin"])
    ground = -np.min(ankle[1], axis=1) + pose.lift  # hip height above the floor
    up = ground[:, None]
    for name, (x, y) in (("hip", hip), ("knee", knee), ("ankle", ankle)):
        joints[name] = np.stack([x, y + up], axis=-1)
    joints["toe"] = joints["ankle"] + np.stack([side_sign * L["foot"] + 0 * ankle[0], 0 * ankle[1]], -1)

    pelvis = np.stack([0 * ground, ground], -1)
    neck_dx, neck_dy = _rotate(0 * ground, L["torso"] * pose.torso, pose.tilt)
    neck = pelvis + np.stack([neck_dx, neck_dy], -1)
    head_dx, head_dy = _rotate(0 * ground, (L["neck"] + actor.head_radius) * (0.4 + 0.6 * pose.torso), pose.tilt)
    sx, sy = _rotate(side_sign * L["shoulder"] + 0 * neck_dx[:, None], 0 * pose.arm, pose.tilt[:, None])
    shoulder = (neck[:, None, 0] + sx, neck[:, None, 1] + sy)
    elbow = limb(shoulder, pose.arm, L["upper_arm"] * pose.arm_scale, pose.tilt)
    wrist = limb(elbow, pose.forearm, L["forearm"] * pose.arm_scale, pose.tilt)
    joints.update(pelvis=pelvis, neck=neck, head=neck + np.stack([head_dx, head_dy], -1),
                  shoulder=np.stack(shoulder, -1), elbow=np.stack(elbow, -1), wrist=np.stack(wrist, -1))
    return joints


@dataclass(frozen=True)
class ClipStyle:
    """Everything one clip varies, apart from its actor and action."""

    period: float
    phase: float
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
        period=action.period * rng.uniform(0.8, 1.25),
        phase=rng.random(),
        amplitude=rng.uniform(0.85, 1.1),
        center_x=rng.uniform(0.3, 0.7),
        ground_y=rng.uniform(0.88, 0.97),
        scale=rng.uniform(0.56, 0.72),
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


def render_clip(class_index: int, group: int, clip: int, frames: int = 96, size: tuple[int, int] = (128, 96),
                seed: int = 0, actor: Actor | None = None) -> Iterator[np.ndarray]:
    """Yield the frames (H, W, 3) uint8 of one video: class `class_index` (0-based index into
    CLASS_NAMES), actor `group` and clip `clip` (both 1-based)."""
    action = ACTIONS[class_index]
    actor = actor or make_actor(seed, group, size)
    rng = np.random.default_rng([seed, 1, class_index, group, clip])
    style = _clip_style(rng, action, frames, size)
    cycles = np.arange(frames) / style.period + style.phase
    pose = action.pose(cycles, rng).exaggerate(style.amplitude)
    joints = _skeleton(pose, actor)

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


# ----------------------------------------------------------------------------- splits and writing


def held_out_groups(groups: int, split: int) -> list[int]:
    """The 1-based groups held out for testing in `split` (1, 2 or 3): consecutive blocks of
    about 25% of the groups, rotating like UCF101's 7-of-25 (wrapping when groups are few)."""
    per_split = max(1, round(groups * TEST_FRACTION))
    first = (split - 1) * per_split
    return sorted({(first + i) % groups + 1 for i in range(per_split)})


def video_name(class_name: str, group: int, clip: int) -> str:
    return f"v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def _validate(classes: int, groups: int, clips_per_group: int, frames: int, size) -> tuple[int, int]:
    class_names(classes)
    if not 2 <= groups <= 99:
        raise DatasetError(f"--groups must be between 2 and 99 (train and test need different actors); got {groups}")
    if not 1 <= clips_per_group <= 99:
        raise DatasetError(f"--clips-per-group must be between 1 and 99; got {clips_per_group}")
    if frames < 8:
        raise DatasetError(f"--frames must be at least 8 (a PCL tuple needs 64); got {frames}")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DatasetError(f"--size must be WIDTHxHEIGHT, e.g. 128x96; got {size!r}") from None
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise DatasetError(f"--size must be even and at least 32x32 (the video codec needs even sizes); "
                           f"got {width}x{height}")
    return width, height


def _parameters(names: list[str], groups: int, clips_per_group: int, frames: int,
                size: tuple[int, int], seed: int) -> dict:
    return {"format_version": FORMAT_VERSION, "classes": names, "groups": groups,
            "clips_per_group": clips_per_group, "frames": frames, "size": list(size), "fps": FPS,
            "seed": seed}


def _split_lines(names: list[str], groups: int, clips_per_group: int, split: int) -> tuple[list[str], list[str]]:
    held_out = set(held_out_groups(groups, split))
    train, test = [], []
    for label, name in enumerate(names, start=1):
        for group in range(1, groups + 1):
            for clip in range(1, clips_per_group + 1):
                relative = f"{name}/{video_name(name, group, clip)}"
                if group in held_out:
                    test.append(relative)
                else:
                    train.append(f"{relative} {label}")
    return train, test


def _write_splits(root: Path, names: list[str], groups: int, clips_per_group: int) -> None:
    splits_dir = root / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    (splits_dir / "classInd.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, start=1)))
    for split in (1, 2, 3):
        train, test = _split_lines(names, groups, clips_per_group, split)
        (splits_dir / f"trainlist0{split}.txt").write_text("".join(line + "\n" for line in train))
        (splits_dir / f"testlist0{split}.txt").write_text("".join(line + "\n" for line in test))


def _split_counts(names: list[str], groups: int, clips_per_group: int) -> dict[int, dict]:
    counts = {}
    for split in (1, 2, 3):
        train, test = _split_lines(names, groups, clips_per_group, split)
        counts[split] = {"train": len(train), "test": len(test), "test_groups": held_out_groups(groups, split)}
    return counts


def _is_complete(root: Path, params: dict) -> bool:
    """True if `root` holds every file of a dataset written with exactly `params`."""
    try:
        stored = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    if stored.get("parameters") != params:
        return False
    names = params["classes"]
    expected = [root / "videos" / n / video_name(n, g, c) for n in names
                for g in range(1, params["groups"] + 1) for c in range(1, params["clips_per_group"] + 1)]
    split_files = [root / "splits" / f for f in ["classInd.txt"] + [f"{kind}list0{s}.txt"
                                                                    for kind in ("train", "test") for s in (1, 2, 3)]]
    return all(path.is_file() and path.stat().st_size > 0 for path in expected + split_files)


def write_synthetic_dataset(out: str | Path, classes: int = 10, groups: int = 8, clips_per_group: int = 3,
                            frames: int = 96, size: tuple[int, int] = (128, 96), seed: int = 0,
                            overwrite: bool = False, progress: bool = True) -> dict:
    """Write the synthetic action dataset to `out` in the UCF101 layout and return a summary.

    `size` is (width, height). A directory that already holds the same dataset (same parameters
    in `synthetic.json`, every file present) is reused without rewriting; any other non-empty
    directory is refused unless `overwrite=True`, which replaces its `videos/` and `splits/`.
    """
    started = time.perf_counter()
    root = Path(out)
    size = _validate(classes, groups, clips_per_group, frames, size)
    names = class_names(classes)
    params = _parameters(names, groups, clips_per_group, frames, size, seed)
    summary = {"root": str(root), "classes": names, "groups": groups, "clips_per_group": clips_per_group,
               "frames": frames, "size": list(size), "fps": FPS, "seed": seed,
               "num_videos": len(names) * groups * clips_per_group}

    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file; choose a directory for the synthetic dataset")
    if _is_complete(root, params):
        summary.update(splits=_split_counts(names, groups, clips_per_group), reused=True,
                       seconds=time.perf_counter() - started)
        return summary
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            what = ("holds an unfinished synthetic dataset or one written with other parameters"
                    if (root / "synthetic.json").exists() or (root / "videos").exists() else "is not empty")
            raise DatasetError(f"{root} {what}; pass --overwrite to replace it or choose another directory")
        for stale in ("videos", "splits"):
            if (root / stale).is_dir():
                shutil.rmtree(root / stale)
        (root / "synthetic.json").unlink(missing_ok=True)

    root.mkdir(parents=True, exist_ok=True)
    jobs = [(index, name, group, clip) for index, name in enumerate(names)
            for group in range(1, groups + 1) for clip in range(1, clips_per_group + 1)]
    actors: dict[int, Actor] = {}
    for index, name, group, clip in tqdm(jobs, desc="synth", unit="video", disable=not progress):
        if group not in actors:
            actors[group] = make_actor(seed, group, size)
        path = root / "videos" / name / video_name(name, group, clip)
        write_video(path, render_clip(index, group, clip, frames, size, seed, actors[group]), fps=FPS)
    _write_splits(root, names, groups, clips_per_group)
    seconds = time.perf_counter() - started
    # Written last: its presence (with matching parameters) marks a complete dataset. No
    # timings in it, so that the same seed gives byte-identical directories.
    (root / "synthetic.json").write_text(json.dumps(
        {"parameters": params, "description": "vidkd synthetic actions: stick figures told apart by motion"},
        indent=2) + "\n")
    summary.update(splits=_split_counts(names, groups, clips_per_group), reused=False, seconds=seconds)
    return summary


def format_summary(summary: dict) -> str:
    """What `vidkd synth` prints: where, what, how long, and the next command."""
    width, height = summary["size"]
    if summary.get("reused"):
        head = f"reused the synthetic dataset at {summary['root']} (same parameters; nothing rewritten)"
    else:
        head = f"wrote the synthetic dataset to {summary['root']} in {summary['seconds']:.1f} s"
    names = summary["classes"]
    lines = [
        head,
        f"  {len(names)} classes: {', '.join(names)}",
        f"  {summary['num_videos']} videos ({len(names)} classes x {summary['groups']} actors x "
        f"{summary['clips_per_group']} clips), {summary['frames']} frames each, {width}x{height} at {summary['fps']} fps",
    ]
    for split, count in summary["splits"].items():
        held_out = ", ".join(f"g{g:02d}" for g in count["test_groups"])
        lines.append(f"  split {split}: {count['train']} train / {count['test']} test videos (test actors {held_out})")
    lines.append(f"next: vidkd data check {summary['root']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- preview


def _decode(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def render_preview(root: str | Path, out_png: str | Path, columns: int = 6, clip: int = 1) -> Path:
    """Save a grid (one row per class, `columns` frames spread over the clip) decoded from the
    written videos, so it shows what the decoder sees. Rows cycle through the actors."""
    from PIL import ImageFont

    root, out_png = Path(root), Path(out_png)
    params = json.loads((root / "synthetic.json").read_text())["parameters"]
    width, height = params["size"]
    label_width, pad = 104, 2
    font = ImageFont.load_default()
    grid = Image.new("RGB", (label_width + columns * (width + pad), len(params["classes"]) * (height + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for row, name in enumerate(params["classes"]):
        group = row % params["groups"] + 1
        video = _decode(root / "videos" / name / video_name(name, group, clip))
        picks = np.linspace(0, len(video) - 1, columns).round().astype(int)
        y = row * (height + pad)
        draw.text((4, y + height // 2 - 12), name, fill="black", font=font)
        draw.text((4, y + height // 2 + 2), f"actor g{group:02d}", fill="gray", font=font)
        for col, index in enumerate(picks):
            grid.paste(Image.fromarray(video[index]), (label_width + col * (width + pad), y))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette halves the PNG of these noisy frames (to about 300 KB) with no visible loss.
    grid.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out_png, optimize=True)
    return out_png
