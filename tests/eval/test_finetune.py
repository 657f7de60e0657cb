"""The fine-tuning and linear-probe recipes: built from a config in one place, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from vidkd.config import load_config
from vidkd.eval.finetune import FinetuneRecipe
from vidkd.eval.linear import LinearRecipe
from vidkd.eval.protocols import PCL_FINETUNE_LR, PCL_NUM_CLIPS, pcl_finetune_recipe


def test_vidkd_recipe_reads_the_eval_train_and_data_sections():
    cfg = load_config(None, ["eval.finetune_epochs=7", "eval.finetune_lr=0.2", "eval.finetune_batch_size=5",
                             "eval.finetune_backbone_lr_scale=0.3", "eval.finetune_dropout=0.4", "eval.num_clips=3",
                             "train.momentum=0.8", "train.weight_decay=0.001", "train.seed=9", "data.clip_len=8"])
    recipe = FinetuneRecipe.from_config(cfg, fraction=0.25)
    assert (recipe.epochs, recipe.lr, recipe.batch_size) == (7, 0.2, 5)
    assert (recipe.backbone_lr_scale, recipe.dropout) == (0.3, 0.4)
    assert (recipe.momentum, recipe.weight_decay, recipe.seed, recipe.clip_len) == (0.8, 0.001, 9, 8)
    assert recipe.fraction == 0.25 and recipe.num_test_clips == 3 and recipe.amp == cfg.train.amp
    assert recipe.scheduler == "cosine" and recipe.val_videos == 0 and recipe.drop_last
    assert recipe.train_transform.train and not recipe.test_transform.train
    assert recipe.train_transform.color_jitter == 0.0  # fine-tuning crops and flips, no colour augmentation
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.lr = 1.0  # type: ignore[misc]


def test_default_recipe_is_the_default_configs_vidkd_recipe():
    built = FinetuneRecipe.from_config(load_config(None, []), fraction=1.0)
    default = FinetuneRecipe(built.train_transform, built.test_transform)
    assert dataclasses.replace(built, amp="none") == default
    cfg = load_config(None, [])
    assert LinearRecipe.from_config(cfg, 1.0) == LinearRecipe(steps=cfg.eval.linear_steps,
                                                               weight_decay=cfg.eval.linear_weight_decay)


def test_pcl_recipe_ignores_the_eval_section():
    cfg = load_config(None, ["eval.finetune_lr=0.5", "eval.finetune_dropout=0.9", "train.amp=bf16"])
    recipe = pcl_finetune_recipe(cfg, fraction=1.0, epochs=3, val_videos=2)
    assert recipe.lr == PCL_FINETUNE_LR and recipe.backbone_lr_scale == 1.0 and recipe.dropout == 0.0
    assert recipe.scheduler == "plateau" and recipe.val_videos == 2 and not recipe.drop_last
    assert recipe.amp == "none" and recipe.num_test_clips == PCL_NUM_CLIPS and recipe.epochs == 3
    assert recipe.train_transform.mean == (0.0, 0.0, 0.0)  # not normalised
