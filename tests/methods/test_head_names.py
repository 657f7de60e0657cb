"""Head tensor names have one owner: each method's model names its own; the rest read them from there."""

from __future__ import annotations

from pathlib import Path


from vidkd.distill.teacher import _head_classes
from vidkd.methods import HEAD_PREFIXES, MODEL_TYPES, method_of
from vidkd.methods.pcl import PCLModel
from vidkd.methods.vcop import VCOPModel
from vidkd.models import build_backbone
from vidkd.models.loading import PCL_PRETEXT_HEAD, PCL_PROJECTION, WeightSource


def test_the_named_tensors_are_those_the_models_hold():
    backbone = build_backbone("r3d", width=0.125)
    pcl = PCLModel(backbone, tuple_len=3, pretext_classes=5, proj_dim=16).state_dict()
    assert tuple(pcl[PCLModel.PRETEXT_LOGITS_WEIGHT].shape) == (5, 3 * backbone.feature_dim)
    assert tuple(pcl[PCLModel.PROJECTION_OUT_WEIGHT].shape) == (16, backbone.feature_dim)
    vcop = VCOPModel(build_backbone("r3d", width=0.125), tuple_len=3, hidden=8).state_dict()
    assert tuple(vcop[VCOPModel.PRETEXT_LOGITS_WEIGHT].shape) == (6, 3 * 8)
    assert tuple(vcop[VCOPModel.ORDER_HIDDEN_WEIGHT].shape) == (8, 2 * backbone.feature_dim)
    for model_type, state in ((PCLModel, pcl), (VCOPModel, vcop)):
        heads = {key for key in state if not key.startswith("backbone.")}
        assert heads and all(key.startswith(model_type.HEAD_PREFIXES) for key in heads)
        assert model_type.PRETEXT_LOGITS_WEIGHT.startswith(model_type.HEAD_PREFIXES)


def test_the_registry_and_the_reference_mapping_read_the_models_names():
    assert set(MODEL_TYPES) == set(HEAD_PREFIXES)
    assert all(HEAD_PREFIXES[name] == model.HEAD_PREFIXES for name, model in MODEL_TYPES.items())
    # models/loading.py sits below methods and spells PCL's names: they must be PCLModel's
    assert PCLModel.PRETEXT_LOGITS_WEIGHT.startswith(PCL_PRETEXT_HEAD)
    assert PCLModel.PROJECTION_OUT_WEIGHT.startswith(PCL_PROJECTION)
    assert PCL_PRETEXT_HEAD.startswith(PCLModel.HEAD_PREFIXES) and PCL_PROJECTION.startswith(PCLModel.HEAD_PREFIXES)


def test_the_teacher_check_reads_the_pretext_classes_of_either_method():
    for model in (PCLModel(build_backbone("r3d", width=0.125), pretext_classes=5),
                  VCOPModel(build_backbone("r3d", width=0.125), tuple_len=4)):
        state = model.state_dict()
        weights = WeightSource(Path("memory"), "vidkd", state)
        assert _head_classes(weights) == (5 if isinstance(model, PCLModel) else 24)
        assert method_of(state, {}) == ("pcl" if isinstance(model, PCLModel) else "vcop")
    bare = {f"backbone.{k}": v for k, v in build_backbone("r3d", width=0.125).state_dict().items()}
    assert _head_classes(WeightSource(Path("memory"), "backbone", bare)) is None
