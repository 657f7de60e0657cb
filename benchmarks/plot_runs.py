"""Plot per-epoch curves of several run directories side by side (for docs/results.md).

    python benchmarks/plot_runs.py --out docs/images/curves.png "R3D scratch=runs/a" "R3D student=runs/b"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vidkd.runs import read_metrics  # noqa: E402

METRICS = (("val_pretext_acc", "validation pretext accuracy"), ("val_knn_top1", "kNN top-1 (test split)"),
           ("train_loss", "training loss"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.6))
    colours: dict[str, str] = {}  # one colour per model (the label's first word), dashed for students
    for item in args.runs:
        label, run = item.split("=", 1)
        metrics = read_metrics(Path(run))
        style = "--" if "student" in label.lower() else "-"
        colour = colours.setdefault(label.split()[0], f"C{len(colours)}")
        if "teacher" in label.lower():
            colour = "black"
        for ax, (key, _) in zip(axes, METRICS):
            points = [(m["epoch"], m[key]) for m in metrics if m.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, color=colour, marker=".", label=label)
    for ax, (key, title) in zip(axes, METRICS):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key != "train_loss":
            ax.axhline(0.2 if key == "val_pretext_acc" else 0.1, color="grey", lw=0.8, ls=":", label="chance")
    axes[0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
