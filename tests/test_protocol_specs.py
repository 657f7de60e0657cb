"""The ProtocolSpec registry: one owner of what config, runs, eval and report know about a protocol."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from vidkd import runs
from vidkd.options.eval import EvalConfig
from vidkd.eval.finetune import evaluate_clips
from vidkd.eval.knn import knn_classify
from vidkd.eval.linear import LinearRecipe, linear_probe
from vidkd.eval.protocols import PROTOCOLS, format_results, result_settings
from vidkd.result_record import ResultRecord
from vidkd.eval.retrieval import retrieval_recall
from vidkd.protocol_specs import (EVAL_PROTOCOLS, HEADLINE, PROTOCOL_NAMES, PROTOCOL_SPECS, RETRIEVAL_KS,
                                  RETRIEVAL_METRICS, ProtocolSpec, recall_name, recipe_of)


def test_the_registry_holds_the_four_protocols_in_run_order():
    assert PROTOCOL_NAMES == ("retrieval", "knn", "linear", "finetune")
    assert list(PROTOCOLS) == list(PROTOCOL_NAMES)
    assert all(name == spec.name for name, spec in PROTOCOL_SPECS.items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOL_SPECS["knn"].headline = "top5"  # type: ignore[misc]


def test_recipes_and_labelled_fractions_come_from_the_specs():
    assert EVAL_PROTOCOLS == ("vidkd", "pcl")
    assert [recipe_of("pcl", name) for name in PROTOCOL_NAMES] == ["pcl", "vidkd", "vidkd", "pcl"]
    assert recipe_of("vidkd", "finetune") == "vidkd" and recipe_of("pcl", "supervised") == "vidkd"
    own = EvalConfig(fraction=0.5, finetune_fraction=0.1)
    assert [own.labelled_fraction(name) for name in PROTOCOL_NAMES] == [0.5, 0.5, 0.5, 0.1]
    assert EvalConfig(fraction=0.25).labelled_fraction("finetune") == 0.25  # unset: the fraction


def test_the_headlines_are_those_the_report_has_always_used():
    assert HEADLINE == {"retrieval": "R@1", "knn": "top1", "linear": "test_top1", "finetune": "video_top1"}
    assert all(spec.metrics[0] == spec.headline for spec in PROTOCOL_SPECS.values())
    with pytest.raises(ValueError, match="headline"):
        ProtocolSpec("x", headline="a", metrics=("b", "a"), uses_labels=False, settings=())


def test_retrieval_metric_names_come_from_the_ks():
    assert RETRIEVAL_METRICS == tuple(recall_name(k) for k in RETRIEVAL_KS) == ("R@1", "R@5", "R@10", "R@20", "R@50")
    assert PROTOCOL_SPECS["retrieval"].metrics == RETRIEVAL_METRICS


def test_labelled_protocols_name_their_fraction_and_the_others_do_not():
    assert runs.LABELLED_FRACTION_PROTOCOLS == ("linear", "finetune")
    for name, spec in PROTOCOL_SPECS.items():
        assert (runs.result_name(name, fraction=0.25) == f"{name}_frac0.25.json") is spec.uses_labels


def test_a_protocols_settings_are_eval_keys_and_what_its_record_stores():
    keys = {f.name for f in dataclasses.fields(EvalConfig)}
    for name, spec in PROTOCOL_SPECS.items():
        assert set(spec.settings) <= keys
        assert list(result_settings(EvalConfig(), name)) == list(spec.settings)


def _clusters(n: int = 24, dim: int = 8, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    return torch.eye(dim)[labels] * 4 + 0.1 * torch.randn(n, dim, generator=generator), labels


def test_every_shown_metric_is_a_key_the_protocols_computation_returns():
    train, train_labels = _clusters()
    test, test_labels = _clusters(12, seed=1)
    produced = {
        "retrieval": retrieval_recall(test, test_labels, train, train_labels),
        "knn": knn_classify(train, train_labels, test, test_labels, k=5),
        "linear": linear_probe(train, train_labels, test, test_labels, LinearRecipe(steps=5), num_classes=3),
    }
    batch = {"clips": torch.randn(2, 3, 4), "label": torch.tensor([0, 1])}  # (videos, clips, features)
    produced["finetune"] = evaluate_clips(nn.Linear(4, 2), [batch], torch.device("cpu"), progress=False)
    for name, spec in PROTOCOL_SPECS.items():
        assert set(spec.metrics) <= set(produced[name]), name
    records = {name: ResultRecord.from_json({"metrics": metrics, "seconds": 1.0}) for name, metrics in produced.items()}
    table = format_results(records)
    assert all(f"{name} " in table for spec in PROTOCOL_SPECS.values() for name in spec.metrics)
