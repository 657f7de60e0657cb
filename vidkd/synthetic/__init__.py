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

Two action sets (`ACTION_SETS`): `cyclic`, the default (`ACTIONS`, repeated movements), and
`directed` (movements shown once, with a direction in time; `reversal_pairs` lists the classes
that are each other's exact time reversal).

- `kinematics`: poses, body lengths, per-action joint-angle trajectories, class names, skeletons.
- `render`: actors, backgrounds, per-clip style, drawing, `render_clip`.
- `writer`: splits, `write_synthetic_dataset`, `format_summary`.
- `preview`: `render_preview`, a grid decoded from the written videos.
"""

from vidkd.synthetic.kinematics import (ACTION_SETS, ACTIONS, CLASS_NAMES, DEFAULT_ACTION_SET, DIRECTED_ACTIONS,
                                        ActionClass, Pose, action_set, class_names, reversal_pairs, skeleton)
from vidkd.synthetic.preview import decode_video_frames, render_preview
from vidkd.synthetic.render import Actor, clip_joints, make_actor, render_clip
from vidkd.synthetic.writer import (DEFAULT_CLIPS_PER_GROUP, DEFAULT_GROUPS, FPS, SyntheticSpec, format_summary,
                                   held_out_groups, is_synthetic_dataset, video_name, write_synthetic_dataset)

__all__ = [
    "ACTIONS", "ACTION_SETS", "CLASS_NAMES", "DEFAULT_ACTION_SET", "DEFAULT_CLIPS_PER_GROUP", "DEFAULT_GROUPS",
    "DIRECTED_ACTIONS", "FPS", "ActionClass", "Actor", "Pose", "SyntheticSpec", "action_set", "class_names", "clip_joints",
    "decode_video_frames", "format_summary", "held_out_groups", "is_synthetic_dataset", "make_actor", "render_clip",
    "render_preview", "reversal_pairs", "skeleton", "video_name", "write_synthetic_dataset",
]
