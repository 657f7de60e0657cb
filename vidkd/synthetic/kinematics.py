"""Kinematics of the synthetic actions: poses, body lengths, joint-angle trajectories and skeletons.

Two action sets (`ACTION_SETS`):

- `cyclic` (the default, `ACTIONS`): every class is a function from the cycle phase (cycles, one
  value per frame) and a random generator to a `Pose`, repeated through the video from a random
  phase. Time-symmetric enough that clip order carries almost no information.
- `directed`: every class is a function from the progress through one movement (0 before it
  starts, 1 after it ends) to a `Pose`, shown once per video. Half the classes come in pairs whose
  time reversal is the other class of the pair (SitDown / StandUp); the others travel across the
  frame with a clear start, middle and end (WalkAcross), so position and pose carry a direction in
  time.

`skeleton` turns a pose and an actor's body lengths into joint positions. Classes differ only in
how the joints move; all start from the same neutral pose (or, for the second class of a pair,
end in it), and none has a mirror-image twin, so a horizontal flip keeps the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from vidkd.errors import DatasetError

if TYPE_CHECKING:
    from vidkd.synthetic.render import Actor

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
    shift: np.ndarray  # (T,) sideways displacement of the whole body (+x), in body units

    @classmethod
    def neutral(cls, t: int) -> "Pose":
        one, two = np.ones(t), np.ones((t, 2))
        return cls(tilt=0 * one, torso=one.copy(), lift=0 * one, arm=NEUTRAL_ARM * two,
                   forearm=NEUTRAL_FOREARM * two, arm_scale=two.copy(), leg=NEUTRAL_LEG * two,
                   shin=NEUTRAL_LEG * two, thigh_scale=two.copy(), shift=0 * one)

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
    period: int | None  # frames per cycle at 25 fps, before the per-clip speed change; None: directed
    pose: Callable[[np.ndarray, np.random.Generator], Pose]  # (cycles or progress per frame, rng) -> Pose
    reverse_of: str | None = None  # the class this one is the exact time reversal of

    @property
    def cyclic(self) -> bool:
        """Repeats through the video from a random phase; otherwise it happens once (directed)."""
        return self.period is not None


# Periods are short enough that an 8-frame clip (the CPU presets) sees a third to most of a cycle:
# with 28-48-frame cycles (format 1) a clip saw a sixth of one, and even supervised training from
# scratch recognised few actions of unseen actors (docs/results.md).
ACTIONS: tuple[ActionClass, ...] = (
    ActionClass("Wave", 16, _wave),
    ActionClass("Clap", 16, _clap),
    ActionClass("Squat", 12, _squat),
    ActionClass("Jump", 12, _jump),
    ActionClass("Punch", 13, _punch),
    ActionClass("Kick", 13, _kick),
    ActionClass("RunInPlace", 12, _run_in_place),
    ActionClass("Bend", 16, _bend),
    ActionClass("JumpingJack", 9, _jumping_jack),
    ActionClass("ArmCircle", 16, _arm_circle),
    ActionClass("SideBend", 16, _side_bend),
    ActionClass("Lunge", 15, _lunge),
)
CLASS_NAMES: tuple[str, ...] = tuple(action.name for action in ACTIONS)


# ----------------------------------------------------------------------------- directed actions
#
# A directed pose function takes the progress u through one movement (0 before it starts, 1 after
# it ends; the renderer holds the end poses before and after) instead of the cycle phase.

TRAVEL = 0.6  # body units WalkAcross crosses: about 40% of a 4:3 frame, with room for the limbs


def _ramp(u: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before `start`, 1 after `end`, a smooth step (zero speed at both ends) in between."""
    x = np.clip((u - start) / (end - start), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pulse(u: np.ndarray, center: float, width: float) -> np.ndarray:
    """Raised-cosine bump, 1 at `center`, 0 beyond width / 2 (not periodic, unlike `_bump`)."""
    d = (u - center) / width
    return np.where(np.abs(d) < 0.5, 0.5 * (1 + np.cos(2 * np.pi * d)), 0.0)


def _direction(rng: np.random.Generator) -> float:
    """+1 (towards +x) or -1: either way, so that a horizontal flip keeps the label."""
    return 1.0 if rng.random() < 0.5 else -1.0


def _side_steps(u: np.ndarray, start: float, end: float, steps: int, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances the (leading, trailing) foot have moved, for `steps` side steps between progress
    `start` and `end`: the leading foot steps out quickly (first 35% of a step), the trailing foot
    closes slowly, so a step reversed in time is not a step in the other direction."""
    taken = np.clip((u - start) / (end - start), 0.0, 1.0) * steps
    done = np.minimum(np.floor(taken), steps - 1)
    phase = taken - done
    return length * (done + _ramp(phase, 0.0, 0.35)), length * (done + _ramp(phase, 0.35, 1.0))


def _stance(p: Pose, lead: np.ndarray, trail: np.ndarray, direction: float, lift_lead: np.ndarray) -> None:
    """Legs and body position from the distances the feet have moved: the pelvis stays midway,
    both legs open by the gap between the feet, and the stepping knee lifts towards the camera."""
    gap = lead - trail
    p.shift = p.shift + direction * (lead + trail) / 2
    for side in (0, 1):
        p.leg[:, side] = NEUTRAL_LEG + 0.95 * gap  # half the gap each side, over a 0.5-unit leg
        p.shin[:, side] = NEUTRAL_LEG + 0.95 * gap
    leading = 1 if direction > 0 else 0  # side 1 is the figure's +x side
    p.thigh_scale[:, leading] = 1 - 0.35 * lift_lead


def _sit_down(u, rng):
    p = Pose.neutral(len(u))
    down = _ramp(u, 0.05, 0.9)
    lean = _pulse(u, 0.45, 0.7)  # the torso leans towards the camera while the weight moves back
    p.torso = 1 - 0.3 * lean - 0.06 * down
    for side in (0, 1):
        p.thigh_scale[:, side] = 1 - 0.85 * down  # thighs point at the camera: a seat at knee height
        p.leg[:, side] = NEUTRAL_LEG + 0.5 * down  # knees apart, feet together: the legs read as bent
        p.shin[:, side] = NEUTRAL_LEG - 0.12 * down
        p.arm[:, side] = NEUTRAL_ARM + 0.35 * lean + 0.15 * down  # reach forward for balance, then rest on the thighs
        p.forearm[:, side] = NEUTRAL_FOREARM + 0.45 * lean + 0.05 * down
        p.arm_scale[:, side] = 1 - 0.55 * lean - 0.2 * down
    return p


def _pick_up(u, rng):
    p = Pose.neutral(len(u))
    down = _ramp(u, 0.04, 0.38) - _ramp(u, 0.5, 0.92)  # bend, grasp, rise
    carry = _ramp(u, 0.45, 0.94)  # from the floor to the belly, held in both hands
    p.torso = 1 - 0.6 * down
    hold_arm, hold_forearm = _reach(-0.05 + 0 * u, -0.2 + 0 * u)
    for side in (0, 1):
        p.thigh_scale[:, side] = 1 - 0.4 * down
        p.leg[:, side] = NEUTRAL_LEG + 0.25 * down
        p.shin[:, side] = NEUTRAL_LEG - 0.1 * down
        reach_arm, reach_forearm = NEUTRAL_ARM - 0.12 * down, NEUTRAL_FOREARM - 0.12 * down  # hands to the floor
        p.arm[:, side] = _blend(reach_arm, hold_arm, carry)
        p.forearm[:, side] = _blend(reach_forearm, hold_forearm, carry)
        p.arm_scale[:, side] = 1 - 0.3 * down - 0.2 * carry  # in front of the body
    return p


def _raise_arms(u, rng):
    p = Pose.neutral(len(u))
    up = _ramp(u, 0.05, 0.85)  # sideways, elbows straight, to overhead
    p.arm[:] = (NEUTRAL_ARM + 2.75 * up)[:, None]
    p.forearm[:] = (NEUTRAL_FOREARM + 2.85 * up)[:, None]
    p.lift = 0.02 * _ramp(u, 0.75, 0.95)  # up on the toes at the top
    return p


def _cross_arms(u, rng):
    p = Pose.neutral(len(u))
    first = int(rng.integers(2))  # either arm first: a flipped clip is the same class
    folded_arm, folded_forearm = _reach(-0.15 + 0 * u, -0.1 + 0 * u)  # hand at the other elbow, in front of the chest
    for order, side in enumerate((first, 1 - first)):
        fold = _ramp(u, 0.05 + 0.25 * order, 0.65 + 0.3 * order)
        p.arm[:, side] = _blend(NEUTRAL_ARM, folded_arm, fold)
        p.forearm[:, side] = _blend(NEUTRAL_FOREARM, folded_forearm, fold)
        p.arm_scale[:, side] = 1 - 0.15 * fold
    return p


def _walk_across(u, rng):
    p = Pose.neutral(len(u))
    direction = _direction(rng)
    step = TRAVEL / 3
    lead, trail = _side_steps(u, 0.05, 0.95, steps=3, length=step)
    _stance(p, lead, trail, direction, lift_lead=_pulse(np.mod(lead / step, 1.0), 0.5, 1.0))
    p.shift = p.shift - direction * TRAVEL / 2  # centred on the clip's position
    # lean into the walk when starting, back when stopping: what makes it forward in time
    p.tilt = direction * (0.14 * _pulse(u, 0.12, 0.18) - 0.14 * _pulse(u, 0.88, 0.18))
    p.arm[:] = (NEUTRAL_ARM + 1.2 * (lead - trail))[:, None]  # arms open with the feet
    return p


def _jump_across(u, rng):
    p = Pose.neutral(len(u))
    direction = _direction(rng)
    crouch = _ramp(u, 0.05, 0.35) - _ramp(u, 0.35, 0.42)  # slow preparation, explosive take-off
    flight = np.clip((u - 0.42) / 0.2, 0.0, 1.0)
    land = _ramp(u, 0.6, 0.67) - _ramp(u, 0.72, 0.97)  # a hard landing absorbed, a slow rise
    bend = crouch + land
    p.lift = 0.12 * 4 * flight * (1 - flight)  # lower than a real jump: the raised arms stay in the frame
    p.shift = direction * 0.8 * TRAVEL * (flight - 0.5)  # constant sideways speed in the air (the arms need room)
    p.tilt = direction * (0.22 * _pulse(u, 0.42, 0.14) - 0.12 * land)
    swing = _ramp(u, 0.35, 0.45) - _ramp(u, 0.55, 0.66)  # arms back, then overhead in the air
    for side in (0, 1):
        p.leg[:, side] = NEUTRAL_LEG + 0.45 * bend
        p.shin[:, side] = NEUTRAL_LEG - 0.3 * bend
        p.thigh_scale[:, side] = 1 - 0.4 * bend
        p.arm[:, side] = NEUTRAL_ARM + 0.3 * crouch + 2.5 * swing + 0.6 * land
        p.forearm[:, side] = NEUTRAL_FOREARM + 0.3 * crouch + 2.6 * swing + 0.8 * land
        p.arm_scale[:, side] = 1 - 0.45 * crouch - 0.45 * land
    return p


def _throw(u, rng):
    p = Pose.neutral(len(u))
    side = int(rng.integers(2))  # the throwing arm; the throw goes across the body, towards the other side
    direction = -1.0 if side == 1 else 1.0
    windup = _ramp(u, 0.04, 0.5)  # slow
    release = _ramp(u, 0.5, 0.6)  # fast
    recover = _ramp(u, 0.7, 0.97)
    arm = _blend(_blend(_blend(NEUTRAL_ARM, 2.2, windup), -0.5, release), NEUTRAL_ARM, recover)
    forearm = _blend(_blend(_blend(NEUTRAL_FOREARM, 3.0, windup), -0.9, release), NEUTRAL_FOREARM, recover)
    p.arm[:, side], p.forearm[:, side] = arm, forearm
    aim = windup * (1 - release)  # the other arm points at the target, then pulls in
    p.arm[:, 1 - side] = NEUTRAL_ARM + 1.3 * aim
    p.forearm[:, 1 - side] = NEUTRAL_FOREARM + 1.4 * aim
    step = _ramp(u, 0.45, 0.65)  # weight back during the wind-up, a step into the throw
    p.shift = direction * (0.4 * step - 0.1 * windup * (1 - step) - 0.1)
    p.tilt = direction * (-0.15 * windup * (1 - release) + 0.2 * release * (1 - recover))
    front = 1 - side
    for leg, stride in ((front, 0.24), (side, 0.1)):  # a wide stance after the step, weight between the feet
        p.leg[:, leg] = NEUTRAL_LEG + stride * step
        p.shin[:, leg] = NEUTRAL_LEG + stride * step
    p.thigh_scale[:, front] = 1 - 0.4 * _pulse(u, 0.5, 0.2)  # the front knee lifts for the step
    return p


def _step_and_kick(u, rng):
    p = Pose.neutral(len(u))
    direction = _direction(rng)
    kicking = 1 if direction > 0 else 0  # the leading leg kicks out sideways
    lead, trail = _side_steps(u, 0.05, 0.45, steps=2, length=0.17)
    _stance(p, lead, trail, direction, lift_lead=0 * u)
    p.shift = p.shift - direction * 0.3  # off centre, away from the kick: the leg needs room
    kick = _ramp(u, 0.55, 0.62) - _ramp(u, 0.68, 0.95)  # fast out, slow back
    p.leg[:, kicking] += 1.1 * kick
    p.shin[:, kicking] += 1.2 * kick
    p.tilt = -direction * 0.3 * kick  # lean away from the kick
    p.arm[:] = (NEUTRAL_ARM + 1.0 * kick)[:, None]  # arms out for balance
    p.forearm[:] = (NEUTRAL_FOREARM + 1.1 * kick)[:, None]
    return p


def _reversal_pair(name: str, reversed_name: str, pose: Callable) -> tuple[ActionClass, ActionClass]:
    """Two directed classes, one the exact time reversal of the other: the second evaluates the
    first's pose at 1 - progress, with the same random draws."""

    def reversed_pose(u: np.ndarray, rng: np.random.Generator) -> Pose:
        return pose(1.0 - u, rng)

    return ActionClass(name, None, pose), ActionClass(reversed_name, None, reversed_pose, reverse_of=name)


# Ordered so that the first 4, 8, 10 or 12 classes hold whole reversal pairs.
DIRECTED_ACTIONS: tuple[ActionClass, ...] = (
    *_reversal_pair("SitDown", "StandUp", _sit_down),
    *_reversal_pair("PickUp", "PutDown", _pick_up),
    ActionClass("WalkAcross", None, _walk_across),
    ActionClass("JumpAcross", None, _jump_across),
    *_reversal_pair("RaiseArms", "LowerArms", _raise_arms),
    *_reversal_pair("CrossArms", "UncrossArms", _cross_arms),
    ActionClass("Throw", None, _throw),
    ActionClass("StepAndKick", None, _step_and_kick),
)

ACTION_SETS: dict[str, tuple[ActionClass, ...]] = {"cyclic": ACTIONS, "directed": DIRECTED_ACTIONS}
DEFAULT_ACTION_SET = "cyclic"


def action_set(actions: str) -> tuple[ActionClass, ...]:
    """The classes of the action set `actions` (a key of ACTION_SETS)."""
    if actions not in ACTION_SETS:
        raise DatasetError(f"unknown synthetic action set {actions!r}; choose one of {', '.join(ACTION_SETS)}")
    return ACTION_SETS[actions]


def class_names(num_classes: int, actions: str = DEFAULT_ACTION_SET) -> list[str]:
    """The first `num_classes` class names of the set `actions` (the label order of classInd.txt)."""
    classes = action_set(actions)
    if not 2 <= num_classes <= len(classes):
        raise DatasetError(f"--classes must be between 2 and {len(classes)} (the {actions} synthetic actions "
                           f"defined: {', '.join(a.name for a in classes)}); got {num_classes}")
    return [action.name for action in classes[:num_classes]]


def reversal_pairs(actions: str = "directed") -> list[tuple[str, str]]:
    """(class, its time reversal) name pairs of the set `actions`, e.g. ("SitDown", "StandUp")."""
    return [(action.reverse_of, action.name) for action in action_set(actions) if action.reverse_of]


# ----------------------------------------------------------------------------- skeleton


def _rotate(x: np.ndarray, y: np.ndarray, tilt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate body-frame offsets so that 'up' leans by `tilt` towards +x."""
    return x * np.cos(tilt) + y * np.sin(tilt), -x * np.sin(tilt) + y * np.cos(tilt)


def skeleton(pose: Pose, actor: Actor) -> dict[str, np.ndarray]:
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
    for position in joints.values():  # the whole body moves sideways (zero for every cyclic action)
        position[..., 0] += pose.shift.reshape(-1, *(1,) * (position.ndim - 2))
    return joints
