"""The result record (vidkd/result_record.py): its JSON round trip and lenient reading."""

from __future__ import annotations

import json

import pytest

from vidkd.result_record import RecordError, ResultRecord


def _record(**changes) -> ResultRecord:
    values = dict(protocol="finetune", source="runs/x", arch="r3d", width=0.25, checkpoint={"epoch": 3},
                  dataset={"root": "data", "split": 1}, input={"clip_len": 8, "crop": 32, "modality": "rgb"},
                  settings={"recipe": "pcl", "epochs": 2}, eval={"num_clips": 10}, metrics={"video_top1": 0.5},
                  device="cpu", timestamp="2026-12-06T00:00:00+00:00", seconds=1.5)
    return ResultRecord(**{**values, **changes})


def test_a_record_survives_its_json_with_history_last_and_without_its_path():
    record = _record(history=[{"epoch": 1, "val_loss": 1.0}]).written_to("out/finetune_pcl.json")
    stored = json.loads(json.dumps(record.to_json()))
    assert list(stored)[-1] == "history" and "path" not in stored
    assert ResultRecord.from_json(stored) == record.written_to(None)
    assert "history" not in _record().to_json()  # a protocol that does not train has none
    assert record.recipe == "pcl" and _record(settings={}).recipe == "vidkd"  # before recipes: vidkd's


@pytest.mark.parametrize("value", [None, [], {"protocol": "knn"}, {"metrics": [0.5]}])
def test_json_without_a_metrics_object_is_not_a_result(value):
    with pytest.raises(RecordError):
        ResultRecord.from_json(value)


def test_parts_of_the_wrong_type_read_as_empty():
    record = ResultRecord.from_json({"metrics": {"top1": 0.3}, "settings": "pcl", "dataset": None, "width": "wide",
                                     "seconds": "slow", "eval": [1], "history": {"epoch": 1}})
    assert record.settings == {} and record.dataset == {} and record.width is None and record.seconds is None
    assert record.eval is None and record.history is None and record.metrics == {"top1": 0.3}
