"""`vidkd <command>`: argument parsing only; the work lives in the packages."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vidkd import runs
from vidkd.apps.adapt import adapt_teacher
from vidkd.apps.demo import run_demo
from vidkd.apps.export import export_onnx
from vidkd.apps.grid import plan_experiment, run_experiment
from vidkd.apps.pretrain import pretrain, resume
from vidkd.config import load_config
from vidkd.data.check import check_dataset, format_report
from vidkd.data.prepare import DEFAULT_GOP, DEFAULT_SHORT_SIDE, EncodeSettings, prepare_dataset
from vidkd.data.prepare import format_summary as format_prepare_summary
from vidkd.data.sampling import TupleSpec, min_tuple_frames
from vidkd.errors import VidkdError
from vidkd.eval.protocols import PROTOCOLS, EvaluationChoices, evaluate, format_results
from vidkd.layout_specs import LAYOUTS
from vidkd.options import METHOD_NAMES
from vidkd.protocol_specs import EVAL_PROTOCOLS, PROTOCOL_NAMES
from vidkd.report import write_report
from vidkd.result_record import ResultRecord
from vidkd.synthetic import (ACTION_SETS, DEFAULT_ACTION_SET, DEFAULT_CLIPS_PER_GROUP, DEFAULT_GROUPS, SyntheticSpec,
                             format_summary, write_synthetic_dataset)
from vidkd.utils.runtime import configure_threads, keep_freed_memory


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT (for example 128x96), got {text!r}") from None
    return w, h


def cmd_synth(args: argparse.Namespace) -> int:
    spec = SyntheticSpec(classes=args.classes, groups=args.groups, clips_per_group=args.clips_per_group,
                         frames=args.frames, size=args.size, seed=args.seed, actions=args.actions)
    summary = write_synthetic_dataset(args.out, spec, overwrite=args.overwrite)
    print(format_summary(summary))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    min_frames = args.min_frames
    if min_frames is None:  # what the training config's tuples need (the default config unless --config)
        cfg = load_config(args.config, _overrides(args))
        min_frames = min_tuple_frames(TupleSpec(cfg.data.clip_len, cfg.data.interval, cfg.data.tuple_len))
    if min_frames < 1:
        raise VidkdError(f"--min-frames must be at least 1; got {min_frames}")
    report = check_dataset(args.root, layout=args.layout, split=args.split, min_frames=min_frames, full=args.full)
    print(format_report(report))
    return 1 if report.fatal else 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    settings = EncodeSettings(short_side=args.short_side, gop=args.gop, codec=args.codec, quality=args.quality)
    summary = prepare_dataset(args.src, args.dst, settings, workers=args.workers)
    print(format_prepare_summary(summary))
    return 1 if summary.prepared + summary.skipped_existing == 0 else 0


def _overrides(args: argparse.Namespace) -> list[str]:
    """`--set a=1 --set b=2` and `--set a=1 b=2` both give ['a=1', 'b=2']."""
    return [item for group in (getattr(args, "set", None) or []) for item in group]


def cmd_pretrain(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    if args.teacher:
        overrides.append(f"teacher.path={args.teacher}")
    if args.resume:
        extra = [f"--{name} {value}" for name, value in (("out", args.out), ("config", args.config)) if value
                 and not (name == "out" and Path(value).resolve() == Path(args.resume).resolve())]
        if extra:
            raise VidkdError(f"--resume continues {args.resume} with its own config and directory, so "
                             f"{' and '.join(extra)} would be ignored: drop it, or start a new run with --out "
                             "(without --resume)")
        _say_threads(runs.config_path(Path(args.resume)), overrides)
        resume(Path(args.resume), overrides=overrides)
        return 0
    if not args.out:
        raise VidkdError("pretrain needs --out RUN_DIR (or --resume RUN_DIR)")
    cfg = load_config(args.config, overrides)
    _say_threads(args.config, overrides)
    pretrain(cfg, Path(args.out))
    return 0


def _say_threads(config: Path | str | None, overrides: list[str]) -> None:
    """One line at the start of training: how many CPUs, threads and data workers it uses."""
    try:
        workers = load_config(config, overrides).data.num_workers
    except VidkdError:
        return  # the command itself says what is wrong with the config
    # logged, not printed: a run refused right after must still be one line of error
    logging.getLogger("vidkd.cli").info(configure_threads(workers).describe().removeprefix("vidkd: "))


def cmd_evaluate(args: argparse.Namespace) -> int:
    shown = []

    def show(record: ResultRecord) -> None:  # each result as soon as it exists: a failed write cannot lose it
        print(format_results({record.protocol: record}, header=not shown, written=False), flush=True)
        shown.append(record)

    overrides = _overrides(args) + ([f"eval.protocol={args.recipe}"] if args.recipe else [])
    results = evaluate(
        args.source, protocols=args.protocol or ("retrieval", "knn"),
        choices=EvaluationChoices(data_root=args.data, layout=args.layout, split=args.split, fraction=args.fraction,
                                  epochs=args.epochs),
        overrides=overrides, out=args.out, on_result=show,
    )
    paths = [r.path for r in results.values() if r.path]
    if paths:
        print(f"results written to {Path(paths[0]).parent}/")
    return 0


def cmd_adapt_teacher(args: argparse.Namespace) -> int:
    out = adapt_teacher(args.checkpoint, args.arch, Path(args.out), config=args.config, overrides=_overrides(args),
                        epochs=args.epochs, allow_partial=args.allow_partial)
    print(f"adapted teacher written to {out}; use it with --teacher {out}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    if not args.out and not args.dry_run:
        raise VidkdError("experiment needs --out DIR (or --dry-run to only list the plan)")
    if args.dry_run:
        out = Path(args.out) if args.out else runs.default_experiment_dir(args.config)
        print(plan_experiment(args.config, out, overrides=_overrides(args)))
        return 0
    out = run_experiment(args.config, Path(args.out), overrides=_overrides(args))
    print(f"experiment finished: {out}  (next: vidkd report {out})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    path = write_report(Path(args.dir))
    print(f"report written to {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    record = export_onnx(Path(args.run_dir), Path(args.out) if args.out else None)
    check = record["check"]
    print(f"exported {record['arch']} (width {record['width']:g}, epoch {record['epoch']}) to {record['onnx']} "
          f"({record['bytes'] / 2**20:.1f} MiB, opset {record['opset']}, input {record['input']['shape']})")
    print(f"check on {check['clip']}: max |onnxruntime - torch| = {check['max_abs_diff']:.2e} "
          f"({'ok' if check['ok'] else 'TOO LARGE'}, tolerance {check['tolerance']:g})")
    print(f"details in {Path(record['onnx']).parent / 'export.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), data_root=Path(args.data) if args.data else None, overrides=_overrides(args),
             on_step=print)
    return 0


def _add_synth_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic action dataset (UCF101 layout)")
    p.add_argument("out", help="output directory")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--groups", type=int, default=DEFAULT_GROUPS, help="actors; train and test never share one")
    p.add_argument("--clips-per-group", type=int, default=DEFAULT_CLIPS_PER_GROUP)
    p.add_argument("--frames", type=int, default=96, help="frames per video (a PCL tuple needs 64, plus a remote clip)")
    p.add_argument("--size", type=_size, default=(128, 96), help="WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at OUT")
    p.add_argument("--actions", choices=list(ACTION_SETS), default=DEFAULT_ACTION_SET,
                   help="action set: cyclic (repeated movements, the default) or directed (movements with a "
                   "direction in time: pairs such as SitDown/StandUp that are each other's time reversal, and "
                   "actions that travel across the frame; docs/synthetic.md)")
    p.set_defaults(func=cmd_synth)


def _add_data_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    c = data_sub.add_parser("check", help="count videos per split/class and list unusable files")
    c.add_argument("root")
    c.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    c.add_argument("--split", type=int, default=1, choices=[1, 2, 3])
    c.add_argument("--min-frames", type=int, default=None,
                   help="frames a video needs (default: what a tuple of --config needs, e.g. 3 x 16 = 48)")
    c.add_argument("--full", action="store_true", help="decode every frame of every video (in parallel): finds "
                   "damage inside files, which the default check of headers and first and last frames misses")
    c.add_argument("--config", help="the training config (path or preset) whose clips the data must give")
    c.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", help="config override")
    c.set_defaults(func=cmd_data_check)
    c = data_sub.add_parser("prepare", help="copy a dataset with every video re-encoded for training "
                            "(short side 128, a keyframe every 16 frames); run again to finish an interrupted copy")
    c.add_argument("src", help="dataset root (UCF101, HMDB51 or class-folder layout)")
    c.add_argument("dst", help="new directory for the copy, outside SRC")
    c.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE,
                   help=f"pixels of the short side (even; smaller videos are not enlarged; default {DEFAULT_SHORT_SIDE})")
    c.add_argument("--gop", type=int, default=DEFAULT_GOP, help=f"keyframe interval in frames (default {DEFAULT_GOP})")
    c.add_argument("--workers", type=int, default=None, help="processes (default: one per usable CPU)")
    c.add_argument("--codec", default=None, help="encoder (default mpeg4; libx264 only for .mp4/.mkv/.mov files)")
    c.add_argument("--quality", type=int, default=None,
                   help="mpeg4 quantiser 2-31 (default 4) or libx264 crf 0-51 (default 23); lower is better and larger")
    c.set_defaults(func=cmd_data_prepare)


def _add_pretrain_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help=f"self-supervised pretraining (method: {' | '.join(METHOD_NAMES)}), with an "
                                        "optional KD teacher")
    p.add_argument("--config", help="YAML config: a path or a preset name (pcl_r3d_synthetic, vcop_r3d_synthetic, ...)")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--teacher", metavar="PATH", help="frozen teacher: run dir, checkpoint or state_dict")
    p.set_defaults(func=cmd_pretrain)


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help=f"evaluation protocols: {', '.join(PROTOCOL_NAMES)}")
    p.add_argument("source", help="run directory, checkpoint, or 'random:ARCH' for random initialisation")
    p.add_argument("--protocol", action="append", choices=list(PROTOCOLS),
                   help="repeatable; default: retrieval and knn")
    p.add_argument("--recipe", choices=list(EVAL_PROTOCOLS), help="how each protocol is run: vidkd (the eval.* "
                   "settings) or pcl (the reference PCL code's retrieval and fine-tuning, every setting fixed; "
                   "docs/evaluation.md); shorthand for --set eval.protocol=RECIPE")
    p.add_argument("--data", help="dataset root (default: the run's data.root)")
    p.add_argument("--layout", default=None, choices=["auto", *LAYOUTS])
    p.add_argument("--split", type=int, default=None, choices=[1, 2, 3])
    p.add_argument("--fraction", type=float, default=None, help="labelled fraction for linear/finetune "
                   "(default: eval.fraction; eval.finetune_fraction for finetune when set)")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs and linear-probe steps "
                   "(default: eval.finetune_epochs / eval.linear_steps)")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE",
                   help="config override (data.*, model.arch/width for a foreign state_dict, eval.*)")
    p.add_argument("--out", help="where to write the JSON result (default: RUN_DIR/eval/)")
    p.set_defaults(func=cmd_evaluate)


def _add_adapt_teacher_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adapt-teacher", help="train a pretext head on a frozen backbone so it can teach")
    p.add_argument("checkpoint", help="torchvision-layout or other backbone state_dict")
    p.add_argument("--arch", required=True)
    p.add_argument("--config", help="YAML config for data and the short head training")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", required=True, help="run directory to write (usable as --teacher)")
    p.add_argument("--allow-partial", action="store_true")
    p.set_defaults(func=cmd_adapt_teacher)


def _add_experiment_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run the paper's grid: baselines, students, evaluations")
    p.add_argument("--config", required=True)
    p.add_argument("--out", help="experiment directory (with --dry-run: default runs/<config name>)")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE",
                   help="experiment key (seeds=[0,1]) or run config key applied to every run (train.epochs=5)")
    p.add_argument("--dry-run", action="store_true", help="list what would run and its estimated cost")
    p.set_defaults(func=cmd_experiment)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="figures and Markdown/HTML report of an experiment directory")
    p.add_argument("dir")
    p.set_defaults(func=cmd_report)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained backbone (ONNX) and check it")
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--out", help="output file (default RUN_DIR/export/backbone.onnx)")
    p.set_defaults(func=cmd_export)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline, small, on the built-in synthetic dataset")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data", help="dataset root: any dataset in the UCF101 layout, or where to write the "
                   "synthetic one (default OUT/data)")
    p.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", help="experiment or run config override")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidkd", description="Self-supervised video learning with knowledge distillation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_synth_command(sub)
    _add_data_command(sub)
    _add_pretrain_command(sub)
    _add_evaluate_command(sub)
    _add_adapt_teacher_command(sub)
    _add_experiment_command(sub)
    _add_report_command(sub)
    _add_export_command(sub)
    _add_demo_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # fewer page faults per training step (docs/benchmarks.md)
    configure_threads()  # torch threads = the CPUs this process may use (affinity mask, cgroup quota)
    try:
        return int(args.func(args) or 0)
    except VidkdError as exc:
        print(f"vidkd: error: {exc}", file=sys.stderr)
        return 2
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:  # a path of the user's
        print(f"vidkd: error: {exc.filename}: {exc.strerror}: a path names a file where a directory is needed, or the "
              "other way round; choose another path (--out)", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine, not vidkd: disk full, read-only or missing directory, permissions
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vidkd: error: {exc.strerror or exc}{where}; free disk space, check permissions or choose another "
              "output directory — checkpoints already written are intact", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or getattr(args, "resume", None)
        hint = f"vidkd pretrain --resume {where}" if args.command == "pretrain" and where else "the same command"
        print(f"vidkd: interrupted; finished work is kept (continue with {hint})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
