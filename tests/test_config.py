"""vidkd.config on its own: sections owned by their methods (vidkd.options), method names, what config.yaml lists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import vidkd.config
from vidkd.apps.pretrain import check_resume_overrides
from vidkd.config import Config, config_differences, config_from_dict, config_yaml, load_config
from vidkd.errors import ConfigError
from vidkd.options import KD_WEIGHT_KEYS, METHOD_NAMES, METHOD_SECTIONS, CVRLConfig
from vidkd.protocol_specs import PROTOCOL_NAMES


def test_a_method_section_is_read_checked_and_suggested():
    cfg = load_config(None, ["method=cvrl", "cvrl.power=2"])
    assert cfg.cvrl == CVRLConfig(power=2.0)
    with pytest.raises(ConfigError, match="did you mean 'cvrl.power'"):
        load_config(None, ["cvrl.powr=1"])
    with pytest.raises(ConfigError, match="'cvrl.proj_dim' must be at least 1"):
        load_config(None, ["cvrl.proj_dim=0"])
    with pytest.raises(ConfigError, match="'cvrl.temperature' must be a positive number"):
        load_config(None, ["cvrl.temperature=.nan"])
    with pytest.raises(ConfigError, match="needs a number"):
        load_config(None, ["cvrl.power=fast"])


def test_a_section_checks_its_method_rules_only_for_a_run_of_its_method():
    with pytest.raises(ConfigError, match="VCOP orders"):
        load_config(None, ["method=vcop", "data.tuple_len=6"])
    assert load_config(None, ["data.tuple_len=6"]).data.tuple_len == 6  # a PCL run may use 6 clips
    with pytest.raises(ConfigError, match="nothing to learn"):
        load_config(None, ["ssl.pretext=none", "ssl.contrastive=none"])
    load_config(None, ["method=vcop", "ssl.pretext=none", "ssl.contrastive=none"])  # not VCOP's concern


def test_config_yaml_lists_a_method_section_for_its_method_or_when_set():
    sections = {section.SECTION: section.METHOD for section in METHOD_SECTIONS}
    for method in METHOD_NAMES:
        written = yaml.safe_load(config_yaml(load_config(None, [f"method={method}"])))
        assert [s for s in written if s in sections] == [s for s, m in sections.items() if m == method]
    assert yaml.safe_load(config_yaml(load_config(None, ["cvrl.power=3"])))["cvrl"]["power"] == 3.0
    assert list(yaml.safe_load(config_yaml(load_config(None)))) == [
        "name", "method", "data", "model", "ssl", "train", "teacher", "eval"]


def test_a_config_file_with_every_method_section_reads_as_the_same_run():
    """Earlier versions wrote every section into config.yaml: such a file is the same run."""
    cfg = load_config(None, ["train.epochs=3"])
    every = Config(train=cfg.train)
    old_file = {"name": "pcl", "method": "pcl", **{f: getattr(every, f).__dict__ for f in ("data", "model", "ssl", "vcop",
                                                                                       "cvrl", "train", "teacher", "eval")}}
    assert config_differences(config_from_dict(old_file).to_dict(), cfg.to_dict()) == []


def test_an_unregistered_method_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="method.*pcl.*vcop.*cvrl"):
        load_config(None, ["method=simclr"])


def test_config_py_names_no_method_kd_term_or_protocol():
    source = Path(vidkd.config.__file__).read_text()
    names = [*METHOD_NAMES, *KD_WEIGHT_KEYS, *PROTOCOL_NAMES, *(section.SECTION for section in METHOD_SECTIONS)]
    quoted = [name for name in names if re.search(rf"[\"']{name}[\"']", source)]
    assert quoted == []


def test_the_options_load_without_torch():
    code = "import sys, vidkd.options, vidkd.options.eval; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_resumed_run_refuses_a_change_in_a_method_section_and_takes_a_repeated_value():
    cvrl_run = load_config(None, ["method=cvrl"]).to_dict()
    with pytest.raises(ConfigError, match="cvrl.power cannot change on a resumed run"):
        check_resume_overrides(["cvrl.power=2"], cvrl_run)
    check_resume_overrides(["cvrl.power=1"], cvrl_run)  # its own value: no change
    check_resume_overrides(["vcop.dropout=0.5"], load_config(None).to_dict())  # a PCL run's file has no vcop:
