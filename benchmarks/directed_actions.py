"""Do self-supervised features see the direction of time? VCOP and PCL on the directed synthetic actions.

    python benchmarks/directed_actions.py [--work runs/directed] [--draw 0] [--seeds 0 1 2] [--epochs N]

1. Writes the directed synthetic dataset (`vidkd synth --actions directed --seed DRAW`, every class
   of the set, 16 actors x 2 clips) to WORK/data_dDRAW.
2. Per seed, pretrains VCOP (preset vcop_r3d_directed) and PCL (pcl_r3d_synthetic) on it with the
   vidkd CLI, in WORK/runs/{vcop,pcl}_sSEED, for the presets' epochs unless --epochs; a finished run
   is kept, an interrupted one resumed, so the script can be run again after a stop.
3. Reads VCOP's validation order accuracy of the last epoch (`val_pretext_acc` in metrics.jsonl;
   chance 1/6 for 3 clips): on the cyclic set it stays at chance, here the order is visible.
4. Evaluates the linear probe (`vidkd evaluate --protocol linear`) of PCL, VCOP and random init
   (`random:r3d` with the runs' input settings and seed). The probe's per-video scores are not
   saved, so the same probe (vidkd.eval.linear: same standardisation, weight-decay choice on
   held-out training actors, L-BFGS fit) is fitted again on the features the evaluation cached;
   its top-1 is checked against the CLI's. For every test video of a class in a time-reversal
   pair (SitDown / StandUp, ...) it asks whether the true class scores above its reversed partner
   (binary accuracy between the two classes, chance 1/2), averaged over those videos.
5. Prints, and writes to --out (default WORK/directed_results.md), Markdown tables: per seed, and
   the mean with a 95% Student-t interval over seeds, PCL - random and VCOP - random paired by seed.
   With --epochs (a smoke run) it also estimates the time of the full run from the logged epoch times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

from vidkd import runs
from vidkd.config import load_config
from vidkd.data.datasets import load_split
from vidkd.eval.fractions import sample_fraction
from vidkd.eval.linear import _fit, _standardise, choose_weight_decay
from vidkd.report.summary import ci95
from vidkd.synthetic import DIRECTED_ACTIONS, reversal_pairs

PRESETS = {"vcop": "vcop_r3d_directed", "pcl": "pcl_r3d_synthetic"}
ORDER_KEY = "val_pretext_acc"  # VCOP's validation accuracy over the 3! clip orders
ORDER_CHANCE = 1 / 6  # tuple_len 3 in both presets
SOURCES = ("pcl", "vcop", "random")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/directed"), help="dataset, runs and results go here")
    parser.add_argument("--draw", type=int, default=0, help="seed of the dataset (`vidkd synth --seed`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: the presets')")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more run config keys for both methods' pretraining (e.g. train.knn_every=0)")
    parser.add_argument("--classes", type=int, default=len(DIRECTED_ACTIONS), help="directed classes to write")
    parser.add_argument("--groups", type=int, default=16, help="actors (smaller: a smoke run)")
    parser.add_argument("--clips-per-group", type=int, default=2)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--out", type=Path, default=None, help="Markdown results (default WORK/directed_results.md)")
    parser.add_argument("--vidkd", default=str(Path(sys.executable).with_name("vidkd")), help="the vidkd command")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1; got {args.epochs}")
    args.out = args.out or args.work / "directed_results.md"
    return args


# ----------------------------------------------------------------------------- running vidkd


def run_vidkd(args: argparse.Namespace, *argv: str) -> float:
    """Run one vidkd command (its output goes to the terminal); returns its wall seconds."""
    command = [args.vidkd, *argv]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(f"directed_actions: `{' '.join(command)}` failed (exit {result.returncode}); see its output above")
    return time.perf_counter() - start


def write_dataset(args: argparse.Namespace, timings: dict[str, float]) -> Path:
    data = args.work / f"data_d{args.draw}"
    timings["synth"] = run_vidkd(
        args, "synth", str(data), "--actions", "directed", "--seed", str(args.draw), "--classes", str(args.classes),
        "--groups", str(args.groups), "--clips-per-group", str(args.clips_per_group), "--frames", str(args.frames),
        "--size", args.size)
    return data


def pretrain(args: argparse.Namespace, method: str, seed: int, data: Path, timings: dict[str, float]) -> Path:
    """The finished run of `method` and `seed`: kept if done, resumed if interrupted, else trained."""
    run_dir = args.work / "runs" / f"{method}_s{seed}"
    epochs = args.epochs or load_config(PRESETS[method]).train.epochs
    state, saved = runs.run_state(run_dir, epochs)
    trained_with = yaml.safe_load(runs.config_path(run_dir).read_text()).get("name") if state != "new" else None
    if trained_with not in (None, PRESETS[method]):  # e.g. a VCOP run of the earlier preset: never mixed in
        sys.exit(f"{run_dir} was trained with the preset {trained_with}, not {PRESETS[method]}; "
                 "move it away or choose another --work")
    timings[f"epochs before {run_dir.name}"] = saved  # what this invocation did not train (time estimate)
    if state == "done":
        print(f"{run_dir}: finished, kept")
        return run_dir
    if state == "partial":  # interrupted, or asked for more epochs now
        timings[f"pretrain {run_dir.name}"] = run_vidkd(args, "pretrain", "--resume", str(run_dir),
                                                        "--set", f"train.epochs={epochs}")
        return run_dir
    if run_dir.exists() and runs.is_run_dir(run_dir):  # started but not one epoch saved: start again
        shutil.rmtree(run_dir)
    overrides = [f"data.root={data}", f"train.seed={seed}"] + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    overrides += args.set
    timings[f"pretrain {run_dir.name}"] = run_vidkd(
        args, "pretrain", "--config", PRESETS[method], "--set", *overrides, "--out", str(run_dir))
    return run_dir


def final_order_accuracy(run_dir: Path) -> float:
    values = [m[ORDER_KEY] for m in runs.read_metrics(run_dir) if m.get("epoch", 0) > 0 and ORDER_KEY in m]
    if not values:
        sys.exit(f"directed_actions: {runs.metrics_path(run_dir)} has no {ORDER_KEY}")
    return float(values[-1])


def evaluate_linear(args: argparse.Namespace, source: str, results: Path, overrides: list[str],
                    timings: dict[str, float], name: str) -> None:
    """`vidkd evaluate SOURCE --protocol linear`, unless its result and cached features are there
    (and, for a run, newer than its last epoch)."""
    done = sorted(results.glob("linear*.json"))
    trained = runs.metrics_path(Path(source))
    newer = not trained.is_file() or (done and done[0].stat().st_mtime > trained.stat().st_mtime)
    if done and newer and list(runs.features_dir(results).glob("*.safetensors")):
        print(f"{results}: linear probe evaluated, kept")
        return
    argv = ["evaluate", source, "--protocol", "linear", "--out", str(results)]
    timings[f"evaluate {name}"] = run_vidkd(args, *argv, *(["--set", *overrides] if overrides else []))


def random_init_overrides(run_dir: Path, seed: int) -> list[str]:
    """The untrained network sees exactly the clips the runs see: their data, width and eval settings."""
    cfg = load_config(runs.config_path(run_dir))
    overrides = [f"model.width={cfg.model.width}", f"train.seed={seed}"]
    overrides += [f"data.{key}={json.dumps(value)}" for key, value in dataclasses.asdict(cfg.data).items()]
    overrides += [f"eval.{key}={json.dumps(value)}" for key, value in dataclasses.asdict(cfg.eval).items()]
    return overrides


# ----------------------------------------------------------------------------- the probe, again


def cached_features(results: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train": (features, labels), "test": ...}: the pooled features the evaluation cached last
    (older files are of earlier weights)."""
    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path in sorted(runs.features_dir(results).glob("*.safetensors"), key=lambda p: p.stat().st_mtime):
        with safe_open(str(path), "pt") as handle:
            key = json.loads(handle.metadata()["key"])
            if key.get("feature") == "pooled":
                found[key["subset"]] = (handle.get_tensor("features"), handle.get_tensor("labels"))
    if set(found) != {"train", "test"}:
        sys.exit(f"directed_actions: no cached train and test features under {runs.features_dir(results)}")
    return found


def probe_test_scores(results: Path, config_source: Path | list[str],
                      data: Path) -> tuple[torch.Tensor, torch.Tensor, float, list[str]]:
    """(test scores (N, classes), test labels, the CLI's top-1, class names): the linear probe of
    `vidkd evaluate` fitted again on its cached features."""
    cfg = load_config(config_source) if isinstance(config_source, Path) else load_config(None, config_source)
    features = cached_features(results)
    train_x, train_y = features["train"]
    test_x, test_y = features["test"]
    train_split = load_split(data, "train", split=cfg.data.split, layout=cfg.data.layout, seed=cfg.train.seed)
    if [r.label for r in train_split.records] != train_y.tolist():
        sys.exit(f"directed_actions: the cached training features of {results} are not those of {data}")
    e, num_classes = cfg.eval, len(train_split.class_names)
    keep = torch.from_numpy(sample_fraction(train_y.numpy(), e.labelled_fraction("linear"), cfg.train.seed))
    x, y = train_x[keep].float(), train_y[keep]
    groups = [train_split.records[i].group for i in keep.tolist()]
    candidates = [float(w) for w in e.linear_weight_decay]
    weight_decay = (choose_weight_decay(x, y, groups, candidates, num_classes, e.linear_steps)[0]
                    if len(candidates) > 1 else candidates[0])
    x, test = _standardise(x, test_x.float())
    weight, bias = _fit(x, y, num_classes, e.linear_steps, weight_decay)
    scores = test @ weight.T + bias
    cli_top1 = json.loads(sorted(results.glob("linear*.json"))[0].read_text())["metrics"]["test_top1"]
    return scores, test_y, float(cli_top1), list(train_split.class_names)


def reversal_accuracy(scores: torch.Tensor, labels: torch.Tensor, names: list[str]) -> tuple[float, dict[str, float]]:
    """Over the test videos of both classes of every time-reversal pair: the share whose true class
    scores above its reversed partner; also per pair."""
    per_pair, everything = {}, []
    for a, b in reversal_pairs("directed"):
        if a not in names or b not in names:
            continue
        ia, ib = names.index(a), names.index(b)
        mine = (labels == ia) | (labels == ib)
        partner = torch.where(labels[mine] == ia, ib, ia)
        true_score = scores[mine].gather(1, labels[mine][:, None])[:, 0]
        right = (true_score > scores[mine].gather(1, partner[:, None])[:, 0]).float()
        per_pair[f"{a}/{b}"] = float(right.mean())
        everything.append(right)
    if not everything:
        sys.exit("directed_actions: the dataset holds no complete time-reversal pair (use more --classes)")
    return float(torch.cat(everything).mean()), per_pair


# ----------------------------------------------------------------------------- reporting


def mean_interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    interval = ci95(values)
    spread = f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else " (one seed: no interval)"
    return f"{100 * mean:.1f}{spread}"


def tables(args: argparse.Namespace, per_seed: dict[int, dict[str, float]], pairs: dict[int, dict]) -> str:
    seeds = sorted(per_seed)
    lines = [f"# Directed synthetic actions: VCOP and PCL against random init (draw {args.draw}, seeds "
             f"{', '.join(map(str, seeds))}, {args.epochs or 'preset'} epochs)", "",
             "Percentages; mean [95% Student-t interval over seeds]; differences paired by seed.", "",
             "| measure | chance | " + " | ".join(f"seed {s}" for s in seeds) + " | mean [95% CI] |",
             "|---|---|" + "---|" * len(seeds) + "---|"]
    chance = {"order": ORDER_CHANCE, "top1": 1 / args.classes, "pairs": 0.5}
    rows = [("VCOP order accuracy (val, last epoch)", "vcop order", "order")]
    for measure, label in (("top1", "linear probe top-1"), ("pairs", "reversal pairs, binary")):
        rows += [(f"{label}: {source}", f"{source} {measure}", measure) for source in SOURCES]
        rows += [(f"{label}: {source} - random", f"{source}-random {measure}", None) for source in ("pcl", "vcop")]
    for title, key, kind in rows:
        values = [per_seed[s][key] for s in seeds]
        lines.append(f"| {title} | {f'{100 * chance[kind]:.1f}' if kind else '0'} | "
                     + " | ".join(f"{100 * v:.1f}" for v in values) + f" | {mean_interval(values)} |")
    lines += ["", "Reversal-pair accuracy per pair (mean over seeds, %):", "",
              "| pair | " + " | ".join(SOURCES) + " |", "|---|" + "---|" * len(SOURCES)]
    for pair in pairs[seeds[0]]["pcl"]:
        lines.append(f"| {pair} | " + " | ".join(
            f"{100 * statistics.fmean(pairs[s][source][pair] for s in seeds):.1f}" for source in SOURCES) + " |")
    return "\n".join(lines) + "\n"


def full_run_estimate(args: argparse.Namespace, run_dirs: list[Path], timings: dict[str, float]) -> str:
    """Minutes the full run would take here: the presets' epochs at the logged per-epoch time (the
    first epoch left out when there are more: it pays for warming up) and the probes, scaled to the
    full dataset's videos, plus each command's start-up as measured; evaluations scaled by the same
    ratio; times 3 seeds."""
    smoke_videos = args.classes * args.groups * args.clips_per_group
    full_videos = len(DIRECTED_ACTIONS) * 16 * 2
    scale = full_videos / smoke_videos
    total = timings.get("synth", 0.0) * scale
    parts = []
    for run_dir in run_dirs:
        logged = runs.read_metrics(run_dir)
        epochs_run = [m for m in logged if m.get("epoch", 0) > 0]
        steady = epochs_run[1:] or epochs_run
        per_epoch = statistics.fmean(m.get("epoch_seconds", 0.0) + m.get("val_seconds", 0.0) for m in steady)
        probes = [m["probe_seconds"] for m in logged if "probe_seconds" in m]
        cfg = load_config(runs.config_path(run_dir))
        epochs = load_config(PRESETS[run_dir.name.split("_")[0]]).train.epochs
        before = timings.get(f"epochs before {run_dir.name}", 0)
        in_epochs = sum(m.get("epoch_seconds", 0.0) + m.get("val_seconds", 0.0) + m.get("probe_seconds", 0.0)
                        for m in logged if m.get("epoch", 0) > before or (before == 0 and m.get("epoch") == 0))
        start_up = max(0.0, timings.get(f"pretrain {run_dir.name}", in_epochs) - in_epochs)
        probe_count = 1 + math.ceil(epochs / cfg.train.knn_every) if cfg.train.knn_every > 0 else 0
        seconds = start_up + (epochs * per_epoch + probe_count * statistics.fmean(probes or [0.0])) * scale
        parts.append(f"{run_dir.name}: {per_epoch:.1f} s/epoch here, about {seconds / 60:.1f} min at {epochs} epochs")
        total += seconds * 3 / len(args.seeds)  # the runs here stand for their method's 3 default seeds
    evaluations = sum(v for k, v in timings.items() if k.startswith("evaluate"))
    total += evaluations * scale * 3 / len(args.seeds)
    return (f"Estimated full run (3 seeds, presets' epochs, {full_videos} videos; this smoke run had "
            f"{smoke_videos}): about {total / 60:.0f} min on this machine.\n  " + "\n  ".join(parts) + "\n")


def main() -> int:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = write_dataset(args, timings)
    per_seed: dict[int, dict[str, float]] = {}
    pairs: dict[int, dict[str, dict[str, float]]] = {}
    run_dirs: list[Path] = []
    for seed in args.seeds:
        trained = {method: pretrain(args, method, seed, data, timings) for method in ("vcop", "pcl")}
        run_dirs += trained.values()
        random_dir = args.work / "runs" / f"random_s{seed}"
        random_overrides = random_init_overrides(trained["pcl"], seed)
        for method, run_dir in trained.items():
            evaluate_linear(args, str(run_dir), runs.eval_dir(run_dir), [], timings, run_dir.name)
        evaluate_linear(args, "random:r3d", random_dir, random_overrides, timings, random_dir.name)

        result = {"vcop order": final_order_accuracy(trained["vcop"])}
        pairs[seed] = {}
        sources = {"pcl": (runs.eval_dir(trained["pcl"]), runs.config_path(trained["pcl"])),
                   "vcop": (runs.eval_dir(trained["vcop"]), runs.config_path(trained["vcop"])),
                   "random": (random_dir, random_overrides + ["model.arch=r3d"])}
        for source, (results, config_source) in sources.items():
            scores, labels, cli_top1, names = probe_test_scores(results, config_source, data)
            top1 = float((scores.argmax(1) == labels).float().mean())
            if abs(top1 - cli_top1) > 1e-6:
                print(f"warning: {source} seed {seed}: the probe fitted again scores {top1:.4f}, the CLI's "
                      f"{cli_top1:.4f}; the pair accuracies come from the refit", file=sys.stderr)
            result[f"{source} top1"] = top1
            result[f"{source} pairs"], pairs[seed][source] = reversal_accuracy(scores, labels, names)
        for source in ("pcl", "vcop"):
            for measure in ("top1", "pairs"):
                result[f"{source}-random {measure}"] = result[f"{source} {measure}"] - result[f"random {measure}"]
        per_seed[seed] = result
        print(f"seed {seed}: " + ", ".join(f"{key} {100 * value:.1f}" for key, value in result.items()), flush=True)

    text = tables(args, per_seed, pairs)
    if args.epochs is not None:
        text += "\n" + full_run_estimate(args, run_dirs, timings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print("\n" + text + f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
