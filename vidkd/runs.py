"""The run directory: the only module that knows its names.

    RUN/config.yaml            the resolved config, enough to re-run
    RUN/metrics.jsonl          one JSON object per epoch, append-only
    RUN/log.txt, RUN/tb/       log and TensorBoard events
    RUN/checkpoints/{last,best}/   see vidkd.utils.checkpoint
    RUN/eval/<protocol>[_<recipe>][_split<S>][_frac<F>].json   one result per protocol, recipe, split, fraction
    RUN/eval/features/         cached evaluation features
    RUN/export/backbone.onnx   `vidkd export`

An experiment directory holds `plan.json`, `experiment.yaml` and one run directory per planned
run under `runs/`. Everything else in vidkd asks this module for paths and for whether a run
has finished.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vidkd.errors import VidkdError
from vidkd.protocol_specs import PROTOCOL_SPECS
from vidkd.utils.checkpoint import META_FILE, WEIGHTS_FILE, copy_checkpoint, find_checkpoint
from vidkd.utils.io import atomic_write_text
from vidkd.utils.lock import exclusive

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".vidkd.lock"  # held by the one process writing a run or experiment directory
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
TB_DIR = "tb"
CHECKPOINTS_DIR = "checkpoints"
EVAL_DIR = "eval"
FEATURES_DIR = "features"
LAST, BEST = "last", "best"

PLAN_FILE = "plan.json"
EXPERIMENT_FILE = "experiment.yaml"
RUNS_DIR = "runs"
REPORT_DIR = "report"

_RESULT_NAME = re.compile(r"^(?P<protocol>[a-z0-9]+)(?:_(?!split|frac)(?P<recipe>[a-z0-9]+))?"
                          r"(?:_split(?P<split>[123]))?(?:_frac(?P<fraction>[0-9.e-]+))?\.json$")


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def tb_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TB_DIR


def checkpoint_dir(run_dir: Path, which: str = LAST) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / which


def eval_dir(run_dir: Path) -> Path:
    return Path(run_dir) / EVAL_DIR


def foreign_eval_dir(run_dir: Path, own_root: str | Path, data_root: str | Path) -> Path:
    """Where results of a run measured on another dataset than its own go (`eval/on_<dataset>/`), so
    they never overwrite, nor are read as, the run's own results."""
    own, other = Path(own_root).resolve(), Path(data_root).resolve()
    name = other.name if other.name != own.name else f"{other.name}_{hashlib.sha1(str(other).encode()).hexdigest()[:8]}"
    return eval_dir(run_dir) / f"on_{name}"


def features_dir(results_dir: Path) -> Path:
    return Path(results_dir) / FEATURES_DIR


EXPORT_DIR = "export"


def export_path(run_dir: Path, name: str = "backbone.onnx") -> Path:
    return Path(run_dir) / EXPORT_DIR / name


@contextmanager
def one_writer(directory: Path, what: str = "run directory") -> Iterator[None]:
    """Hold `directory`'s writer lock while the block runs: a second writer is refused, naming the
    first. The directory is created, and removed again if the block left it empty.

    Raises:
        VidkdError: `directory` is a file.
        DirectoryBusyError: another process writes it.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise VidkdError(f"{directory} is a file; give a directory for the {what}")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(directory / LOCK_FILE, f"{what} {directory}"):
            yield
    finally:
        if created and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def is_empty_dir(directory: Path) -> bool:
    """No file in `directory` but, perhaps, a writer lock left by a killed process."""
    return all(path.name == LOCK_FILE for path in Path(directory).iterdir())


def is_run_dir(path: Path) -> bool:
    return config_path(path).is_file()


def find_run_dir(source: Path) -> Path | None:
    """The run directory holding `source`: itself, a checkpoint directory in it, or a weights file."""
    source = Path(source)
    path = source if source.is_dir() else source.parent
    for candidate in (path, path.parent, path.parent.parent):
        if is_run_dir(candidate):
            return candidate
    return None


def trained_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a trained run is used through: best, else last (None before the first epoch).

    `last` is taken instead of `best` when `last` says its own epoch was the best one and `best`
    holds another: the save of `best` after it was interrupted (see `recover_best`)."""
    if _stale_best(run_dir):
        return find_checkpoint(checkpoint_dir(run_dir, LAST))
    for which in (BEST, LAST):
        found = find_checkpoint(checkpoint_dir(run_dir, which))
        if found is not None:
            return found
    return None


def _epochs(directory: Path | None) -> tuple[Any, Any]:
    """(epoch, best_epoch) of a checkpoint's meta.json; None where unknown or unreadable."""
    if directory is None:
        return None, None
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(meta, dict):
        return None, None
    best = meta.get("best_epoch")
    if best is None and (meta.get("config") or {}).get("train", {}).get("best_by") == "last":
        best = meta.get("epoch")  # written before best_epoch was recorded: with best_by last, last is best
    return meta.get("epoch"), best


def _stale_best(run_dir: Path) -> bool:
    """`last` says its epoch was the best, and `best` is missing or a readable checkpoint of another epoch
    (a damaged `best` is left for the loader to name)."""
    last_epoch, best_epoch = _epochs(find_checkpoint(checkpoint_dir(run_dir, LAST)))
    if last_epoch is None or best_epoch != last_epoch:
        return False
    best = find_checkpoint(checkpoint_dir(run_dir, BEST))
    if best is None:
        return True
    try:
        return json.loads((best / META_FILE).read_text()).get("epoch") != last_epoch
    except (OSError, ValueError, AttributeError):
        return False


def recover_best(run_dir: Path) -> bool:
    """Redo an interrupted save of `best` from `last` (same epoch, same files); True if it was needed."""
    if not _stale_best(run_dir):
        return False
    source, target = find_checkpoint(checkpoint_dir(run_dir, LAST)), checkpoint_dir(run_dir, BEST)
    copy_checkpoint(source, target)
    return True


# --------------------------------------------------------------------------- metrics


def read_metrics(run_dir: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The per-epoch records of a run; a line cut short by a crash is skipped (and noted in `problems`)."""
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    records = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # cut short by a crash, or bytes that are not UTF-8 text
            if problems is not None:
                problems.append(f"{path.name} line {number} is not JSON (skipped)")
            continue
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            if problems is not None:
                problems.append(f"{path.name} line {number} has no epoch number (skipped)")
            continue
        records.append(record)
    return records


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(metrics_path(run_dir), "a") as fh:
        fh.write(json.dumps(record) + "\n")


def keep_metrics_before(run_dir: Path, epoch: int) -> None:
    """Drop the lines of epochs >= `epoch` (a resumed run re-trains them)."""
    kept = [m for m in read_metrics(run_dir) if isinstance(m.get("epoch"), int) and m["epoch"] < epoch]
    atomic_write_text(metrics_path(run_dir), "".join(json.dumps(m) + "\n" for m in kept))


# --------------------------------------------------------------------------- status


def saved_epoch(run_dir: Path) -> int:
    """The epoch of the newest complete `last` checkpoint (0 when there is none)."""
    found = find_checkpoint(checkpoint_dir(run_dir, LAST))
    if found is None:
        return 0
    try:
        return int(json.loads((found / META_FILE).read_text()).get("epoch", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def run_state(run_dir: Path, planned_epochs: int) -> tuple[str, int]:
    """('new' | 'partial' | 'done', last saved epoch): the one definition of a finished run."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        return "new", 0
    epoch = saved_epoch(run_dir)
    logged = {m.get("epoch") for m in read_metrics(run_dir)}
    if epoch >= planned_epochs and planned_epochs in logged:
        return "done", epoch
    return ("partial" if epoch > 0 else "new"), epoch


def has_trained(run_dir: Path) -> bool:
    """At least one epoch is checkpointed: the run directory is worth keeping."""
    return saved_epoch(run_dir) > 0 or (checkpoint_dir(run_dir, BEST) / WEIGHTS_FILE).is_file()


# --------------------------------------------------------------------------- evaluation results


# the protocols that train on labels (vidkd.protocol_specs); the others use none, so no fraction in their name
LABELLED_FRACTION_PROTOCOLS = tuple(name for name, spec in PROTOCOL_SPECS.items() if spec.uses_labels)


def result_name(protocol: str, split: int = 1, fraction: float = 1.0, recipe: str = "vidkd") -> str:
    """`finetune.json`; another recipe (`finetune_pcl.json`), split or labelled fraction gets a suffix,
    so results never overwrite each other."""
    name = protocol if recipe == "vidkd" else f"{protocol}_{recipe}"
    if split != 1:
        name += f"_split{split}"
    if fraction < 1 and protocol in LABELLED_FRACTION_PROTOCOLS:
        name += f"_frac{fraction:g}"
    return name + ".json"


def result_path(results_dir: Path, protocol: str, split: int = 1, fraction: float = 1.0,
                recipe: str = "vidkd") -> Path:
    return Path(results_dir) / result_name(protocol, split, fraction, recipe)


@dataclass(frozen=True)
class ResultKey:
    protocol: str
    split: int
    fraction: float
    recipe: str = "vidkd"


def parse_result_name(name: str) -> ResultKey | None:
    match = _RESULT_NAME.match(name)
    if match is None:
        return None
    try:
        fraction = float(match["fraction"]) if match["fraction"] else 1.0
    except ValueError:
        return None
    return ResultKey(match["protocol"], int(match["split"] or 1), fraction, match["recipe"] or "vidkd")


def iter_results(results_dir: Path) -> Iterator[tuple[ResultKey, Path]]:
    """Every result file of a run, with the protocol, split and fraction its name encodes."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return
    for path in sorted(results_dir.glob("*.json")):
        key = parse_result_name(path.name)
        if key is not None:
            yield key, path


# --------------------------------------------------------------------------- experiments


def default_experiment_dir(config: str | Path) -> Path:
    """Where a dry run of the experiment config `config` (a path or a preset name) says its grid goes."""
    return Path(RUNS_DIR) / Path(config).stem


def experiment_run_dir(experiment_dir: Path, run_name: str) -> Path:
    return Path(experiment_dir) / RUNS_DIR / run_name


def baseline_run_name(arch: str, seed: int) -> str:
    """`baseline_<arch>_s<seed>`: an experiment's run of `arch` trained from scratch."""
    return f"baseline_{arch}_s{seed}"


def teacher_run_name(arch: str, epochs: int, seed: int) -> str:
    """`teacher_<arch>_e<epochs>_s<seed>`: a from-scratch run of `arch` trained for a teacher budget
    other than the experiment's epochs (a teacher-strength study)."""
    return f"teacher_{arch}_e{epochs}_s{seed}"


def student_run_name(teacher_arch: str, student_arch: str, seed: int, teacher_epochs: int | None = None,
                     arm: str | None = None) -> str:
    """`kd_<teacher>_to_<student>_s<seed>`: an experiment's student of the baseline of that seed;
    `kd_<teacher>e<N>_to_<student>[_<arm>]_s<seed>` when taught by a teacher of budget N or in a named arm."""
    budget = "" if teacher_epochs is None else f"e{teacher_epochs}"
    named_arm = "" if arm is None else f"_{arm}"
    return f"kd_{teacher_arch}{budget}_to_{student_arch}{named_arm}_s{seed}"


DRAW_PREFIX = "draw_"
DRAW_DATA_DIR = "data"  # a draw's synthetic dataset, inside its draw directory


def draw_dir(experiment_dir: Path, draw: int) -> Path:
    """`draw_<k>`: the experiment directory of one draw (dataset seed) of a multi-draw experiment."""
    return Path(experiment_dir) / f"{DRAW_PREFIX}{draw}"


def draw_data_dir(experiment_dir: Path, draw: int) -> Path:
    return draw_dir(experiment_dir, draw) / DRAW_DATA_DIR


def iter_draw_dirs(experiment_dir: Path) -> Iterator[tuple[int, Path]]:
    """(draw, directory) of every draw of a multi-draw experiment, by draw."""
    found = []
    for path in Path(experiment_dir).glob(f"{DRAW_PREFIX}*"):
        suffix = path.name[len(DRAW_PREFIX):]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    yield from sorted(found)


DEMO_DATA_DIR = "data"  # the demo's synthetic dataset, inside its --out


def demo_data_dir(demo_dir: Path) -> Path:
    return Path(demo_dir) / DEMO_DATA_DIR


RANDOM_INIT_PREFIX = "random_"


def random_init_dir(experiment_dir: Path, arch: str, seed: int | None = None) -> Path:
    """`random_<arch>_s<seed>`: the untrained network drawn with that seed (`random_<arch>`: no seed given)."""
    suffix = "" if seed is None else f"_s{seed}"
    return experiment_run_dir(experiment_dir, f"{RANDOM_INIT_PREFIX}{arch}{suffix}")


_RANDOM_INIT_NAME = re.compile(r"^(?P<arch>.+?)(?:_s(?P<seed>\d+))?$")


def iter_random_init_dirs(experiment_dir: Path) -> Iterator[tuple[str, int | None, Path]]:
    """(arch, seed or None, directory) of every random-initialisation evaluation of an experiment."""
    for path in sorted((Path(experiment_dir) / RUNS_DIR).glob(f"{RANDOM_INIT_PREFIX}*")):
        match = _RANDOM_INIT_NAME.match(path.name[len(RANDOM_INIT_PREFIX):])
        if path.is_dir() and match:
            yield match["arch"], int(match["seed"]) if match["seed"] else None, path


def plan_path(experiment_dir: Path) -> Path:
    return Path(experiment_dir) / PLAN_FILE


def report_dir(directory: Path) -> Path:
    return Path(directory) / REPORT_DIR


TIMING_FILE = "timing.json"  # seconds spent outside the runs (writing data, the whole grid), by `vidkd demo`


def timing_path(experiment_dir: Path) -> Path:
    return Path(experiment_dir) / TIMING_FILE
