"""The experiment plan (`plan.json`): what `vidkd experiment` trains and evaluates.

Written by apps/grid.py, read by the report. Both see only these frozen records; their JSON lives
here. Reading is lenient where an older or hand-edited plan may differ (a missing or malformed
value takes its default), strict where nothing could be reported (no list of runs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidkd import runs
from vidkd.protocol_specs import EVAL_PROTOCOLS, PROTOCOL_SPECS


class PlanError(ValueError):
    """The JSON is not an experiment plan."""


@dataclass(frozen=True)
class PlanEntry:
    """One planned training run. The field order is the key order of plan.json."""

    name: str
    kind: str  # baseline | teacher (a budget other than the runs' epochs) | student
    arch: str
    seed: int | None = None
    teacher_arch: str | None = None
    teacher_run: str | None = None
    epochs: int | None = None  # the run's budget
    teacher_epochs: int | None = None  # a student's teacher's budget (None: the baseline's)
    arm: str | None = None  # a student's named KD arm (None: the experiment's `teacher` section)
    run_dir: str = ""  # relative to the experiment directory ("": runs.experiment_run_dir of the name)
    width: float | None = None
    method: str | None = None

    def path(self, experiment_dir: Path) -> Path:
        """The run's directory."""
        return experiment_dir / self.run_dir if self.run_dir else runs.experiment_run_dir(experiment_dir, self.name)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PlanEntry:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {key: item for key, item in value.items() if key in known}
        return cls(**{**fields, "name": str(value.get("name", "")), "kind": str(value.get("kind") or ""),
                      "arch": str(value.get("arch") or ""), "run_dir": str(value.get("run_dir") or "")})


@dataclass(frozen=True)
class Plan:
    """An experiment's plan. The field order is the key order of plan.json."""

    runs: tuple[PlanEntry, ...]
    name: str = ""
    dataset: str = ""  # synthetic | ucf101 | hmdb51 | folder: decides whether published numbers compare
    dataset_root: str | None = None
    layout: str | None = None
    split: int = 1
    epochs: int | None = None
    fraction: float = 1.0  # the linear probe's labelled fraction
    finetune_fraction: float | None = None  # None: `fraction`
    protocol: str = "vidkd"  # the evaluation recipe (eval.protocol)
    seeds: tuple[int, ...] = ()
    evaluations: tuple[str, ...] = ()
    student_evaluations: tuple[str, ...] | None = None  # None: `evaluations`

    def labelled_fraction(self, protocol: str = "linear") -> float:
        """The labelled fraction `protocol` uses: the plan's field of its spec's `fraction_key` when set
        (the plan's fraction fields are named as the eval.* keys they record)."""
        spec = PROTOCOL_SPECS.get(protocol)
        own = getattr(self, spec.fraction_key, None) if spec is not None else None
        return own or self.fraction

    def evaluations_of(self, kind: str) -> tuple[str, ...]:
        """The evaluations planned for a run of `kind`."""
        if kind == "student" and self.student_evaluations is not None:
            return self.student_evaluations
        return self.evaluations

    def to_json(self) -> dict[str, Any]:
        """plan.json's object: the plan's values, then its runs."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "runs"}
        values = {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}
        return {**values, "runs": [dataclasses.asdict(entry) for entry in self.runs]}

    @classmethod
    def from_json(cls, value: Any) -> Plan:
        """The plan of a plan.json object; PlanError when it has no list of runs."""
        if not isinstance(value, dict) or not isinstance(value.get("runs"), list):
            raise PlanError("no runs list")
        students = value.get("student_evaluations")
        return cls(
            runs=tuple(PlanEntry.from_json(entry) for entry in value["runs"] if isinstance(entry, dict)),
            name=str(value.get("name") or ""),
            dataset=str(value.get("dataset") or ""),
            dataset_root=value.get("dataset_root"),
            layout=value.get("layout"),
            split=_number(value.get("split"), int, 1),
            epochs=value.get("epochs") if isinstance(value.get("epochs"), int) else None,
            fraction=_number(value.get("fraction"), float, 1.0),
            finetune_fraction=_number(value.get("finetune_fraction"), float, None),
            protocol=value["protocol"] if value.get("protocol") in EVAL_PROTOCOLS else "vidkd",
            seeds=tuple(value["seeds"]) if isinstance(value.get("seeds"), list) else (),
            evaluations=_names(value.get("evaluations")) or (),
            student_evaluations=_names(students),
        )


def _number(value: Any, kind: type, default: Any) -> Any:
    """`kind(value)`; `default` for a missing, zero or malformed value."""
    try:
        return kind(value) if value else default
    except (TypeError, ValueError):
        return default


def _names(value: Any) -> tuple[str, ...] | None:
    return tuple(str(item) for item in value) if isinstance(value, list) else None
