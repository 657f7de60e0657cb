"""One evaluation result (`RUN/eval/<protocol>[_...].json`).

Written by `vidkd.eval.protocols`, read by the report and by the grid (which re-evaluates a result
computed with other settings). Both see only this frozen record; its JSON lives here. Reading is
lenient: a part of the file that is missing or of the wrong type reads as empty, so that a result
written by an older vidkd still reports what it has; only a file without a metrics object is not a
result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class RecordError(ValueError):
    """The JSON is not an evaluation result."""


@dataclass(frozen=True)
class ResultRecord:
    """The field order is the key order of the file."""

    protocol: str
    source: str  # a run directory, a checkpoint or random:ARCH
    arch: str
    width: float | None
    checkpoint: dict[str, Any]  # what was loaded (`checkpoint_summary`)
    dataset: dict[str, Any]  # root, layout, split and video counts
    input: dict[str, Any]  # clip_len, resize, crop, modality
    settings: dict[str, Any]  # how the protocol ran (its recipe and everything the number depends on)
    eval: dict[str, Any] | None  # the `eval.*` values of its ProtocolSpec.settings (None: older than them)
    metrics: dict[str, Any]
    device: str
    timestamp: str
    seconds: float | None
    history: list[dict[str, Any]] | None = None  # per-epoch values of a protocol that trains
    path: str | None = None  # where it was written (not stored in the file)

    @property
    def recipe(self) -> str:
        """The recipe the protocol ran (vidkd or pcl)."""
        return str(self.settings.get("recipe", "vidkd"))

    def written_to(self, path: str) -> ResultRecord:
        return dataclasses.replace(self, path=path)

    def to_json(self) -> dict[str, Any]:
        """The file's object: every field but `path`, with `history` last and only when present."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                  if field.name not in ("history", "path")}
        return {**values, "history": self.history} if self.history is not None else values

    @classmethod
    def from_json(cls, value: Any) -> ResultRecord:
        """The record of a result file's object; RecordError when it has no metrics object."""
        if not isinstance(value, dict) or not isinstance(value.get("metrics"), dict):
            raise RecordError("no metrics object")

        def part(key: str) -> dict[str, Any]:
            return value[key] if isinstance(value.get(key), dict) else {}

        width, seconds = value.get("width"), value.get("seconds")
        return cls(
            protocol=str(value.get("protocol", "")), source=str(value.get("source", "")),
            arch=str(value.get("arch", "")), width=float(width) if isinstance(width, (int, float)) else None,
            checkpoint=part("checkpoint"), dataset=part("dataset"), input=part("input"), settings=part("settings"),
            eval=value["eval"] if isinstance(value.get("eval"), dict) else None, metrics=value["metrics"],
            device=str(value.get("device", "")), timestamp=str(value.get("timestamp", "")),
            seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
            history=value["history"] if isinstance(value.get("history"), list) else None,
        )
