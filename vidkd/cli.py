"""`vidkd <command>`: argument parsing only; the work lives in the packages."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vidkd.errors import VidkdError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT (for example 128x96), got {text!r}") from None
    return w, h


def cmd_synth(args: argparse.Namespace) -> int:
    from vidkd.data.synthetic import format_summary, write_synthetic_dataset

    summary = write_synthetic_dataset(
        args.out, classes=args.classes, groups=args.groups, clips_per_group=args.clips_per_group,
        frames=args.frames, size=args.size, seed=args.seed, overwrite=args.overwrite,
    )
    print(format_summary(summary))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from vidkd.data.check import check_dataset, format_report

    report = check_dataset(args.root, layout=args.layout, split=args.split, min_frames=args.min_frames)
    print(format_report(report))
    return 1 if report.fatal else 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from vidkd.config import load_config
    from vidkd.engine.trainer import pretrain

    overrides = list(args.set or [])
    if args.teacher:
        overrides.append(f"teacher.path={args.teacher}")
    if args.resume:
        from vidkd.engine.trainer import resume

        resume(Path(args.resume), overrides=overrides)
        return 0
    if not args.out:
        raise VidkdError("pretrain needs --out RUN_DIR (or --resume RUN_DIR)")
    cfg = load_config(args.config, overrides)
    pretrain(cfg, Path(args.out))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vidkd.eval.run import evaluate_cli

    return evaluate_cli(args)


def cmd_adapt_teacher(args: argparse.Namespace) -> int:
    from vidkd.distill.adapt import adapt_teacher_cli

    return adapt_teacher_cli(args)


def cmd_experiment(args: argparse.Namespace) -> int:
    from vidkd.experiments.grid import run_experiment

    if not args.out and not args.dry_run:
        raise VidkdError("experiment needs --out DIR (or --dry-run to only list the plan)")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    return run_experiment(args.config, out, overrides=args.set, dry_run=args.dry_run)


def cmd_report(args: argparse.Namespace) -> int:
    from vidkd.experiments.report import write_report

    path = write_report(Path(args.dir))
    print(f"report written to {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vidkd.experiments.export import export_cli

    return export_cli(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from vidkd.experiments.demo import run_demo

    return run_demo(Path(args.out), data_root=Path(args.data) if args.data else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidkd", description="Self-supervised video learning with knowledge distillation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synth", help="write the built-in synthetic action dataset (UCF101 layout)")
    p.add_argument("out", help="output directory")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--groups", type=int, default=8, help="actors; train and test never share one")
    p.add_argument("--clips-per-group", type=int, default=3)
    p.add_argument("--frames", type=int, default=96, help="frames per video (a PCL tuple needs 64, plus a remote clip)")
    p.add_argument("--size", type=_size, default=(128, 96), help="WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at OUT")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    c = data_sub.add_parser("check", help="count videos per split/class and list unusable files")
    c.add_argument("root")
    c.add_argument("--layout", default="auto", choices=["auto", "ucf101", "hmdb51", "folder"])
    c.add_argument("--split", type=int, default=1, choices=[1, 2, 3])
    c.add_argument("--min-frames", type=int, default=64, help="frames a sample needs (PCL tuple: 64)")
    c.set_defaults(func=cmd_data_check)

    p = sub.add_parser("pretrain", help="self-supervised PCL pretraining, with an optional KD teacher")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--teacher", metavar="PATH", help="frozen teacher: run dir, checkpoint or state_dict")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="retrieval, kNN, linear probe, fine-tuning")
    p.add_argument("source", help="run directory, checkpoint, or 'random:ARCH' for random initialisation")
    p.add_argument("--protocol", action="append", choices=["retrieval", "knn", "linear", "finetune"],
                   help="repeatable; default: retrieval and knn")
    p.add_argument("--data", help="dataset root (default: the run's data.root)")
    p.add_argument("--layout", default=None, choices=["auto", "ucf101", "hmdb51", "folder"])
    p.add_argument("--split", type=int, default=None, choices=[1, 2, 3])
    p.add_argument("--fraction", type=float, default=1.0, help="labelled fraction for linear/finetune")
    p.add_argument("--epochs", type=int, default=None, help="epochs for linear probe / fine-tuning")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for data/model keys")
    p.add_argument("--out", help="where to write the JSON result (default: RUN_DIR/eval/)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("adapt-teacher", help="train a pretext head on a frozen backbone so it can teach")
    p.add_argument("checkpoint", help="torchvision-layout or other backbone state_dict")
    p.add_argument("--arch", required=True)
    p.add_argument("--config", help="YAML config for data and the short head training")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", required=True, help="run directory to write (usable as --teacher)")
    p.add_argument("--allow-partial", action="store_true")
    p.set_defaults(func=cmd_adapt_teacher)

    p = sub.add_parser("experiment", help="run the paper's grid: baselines, students, evaluations")
    p.add_argument("--config", required=True)
    p.add_argument("--out", help="experiment directory (with --dry-run: default runs/<config name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="experiment key (seeds=[0,1]) or run config key applied to every run (train.epochs=5)")
    p.add_argument("--dry-run", action="store_true", help="list what would run and its estimated cost")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="figures and Markdown/HTML report of an experiment directory")
    p.add_argument("dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a trained backbone (ONNX) and check it")
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--out", help="output file (default RUN_DIR/export/backbone.onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the whole pipeline, small, on the built-in synthetic dataset")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data", help="synthetic dataset location (default OUT/data)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VidkdError as exc:
        print(f"vidkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vidkd: interrupted; finished checkpoints are kept (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
