"""vidkd.config on its own: sections registered by their owners, method names, what config.yaml lists."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from vidkd.config import (REGISTERED_METHODS, REGISTERED_SECTIONS, Config, config_differences, config_yaml,
                          load_config, register_method, register_section)
from vidkd.errors import ConfigError


@dataclasses.dataclass
class _Options:
    depth: int = 2
    rate: float = 0.5

    def check(self) -> None:
        if self.depth < 1:
            raise ConfigError(f"config key 'probe_options.depth' must be at least 1; got {self.depth}")


@pytest.fixture(scope="module")
def registered():
    register_section("probe_options", _Options)
    register_method("probe_method")
    yield
    REGISTERED_SECTIONS.pop("probe_options")
    REGISTERED_METHODS.remove("probe_method")


def test_a_registered_section_is_read_checked_and_suggested(registered):
    cfg = load_config(None, ["probe_options.depth=3"])
    assert cfg.probe_options == _Options(depth=3)
    with pytest.raises(ConfigError, match="did you mean 'probe_options.rate'"):
        load_config(None, ["probe_options.rat=1"])
    with pytest.raises(ConfigError, match="'probe_options.depth' must be at least 1"):
        load_config(None, ["probe_options.depth=0"])
    with pytest.raises(ConfigError, match="'probe_options.rate' needs a finite number"):
        load_config(None, ["probe_options.rate=.nan"])
    with pytest.raises(ConfigError, match="needs a number"):
        load_config(None, ["probe_options.rate=fast"])


def test_config_yaml_lists_a_registered_section_for_its_method_or_when_set(registered):
    assert "probe_options" not in yaml.safe_load(config_yaml(load_config(None)))
    assert yaml.safe_load(config_yaml(load_config(None, ["probe_options.rate=0.25"])))["probe_options"]["rate"] == 0.25
    own = yaml.safe_load(config_yaml(load_config(None, ["method=probe_method", "name=probe_method"])))
    assert "probe_options" not in own  # a section is its method's only when named so
    cfg = load_config(None, ["probe_options.depth=5"])
    written = yaml.safe_load(config_yaml(cfg))
    assert list(written)[-1] == "probe_options"  # after the fixed sections: their files do not change
    reread = load_config(None, [f"{section}.{key}={value!r}" if isinstance(value, str) else f"{section}.{key}={value}"
                                for section in ("probe_options",) for key, value in written[section].items()])
    assert config_differences(reread.to_dict(), cfg.to_dict()) == []


def test_a_section_name_is_taken_once():
    with pytest.raises(ValueError, match="exists already"):
        register_section("train", _Options)
    with pytest.raises(ValueError, match="exists already"):
        register_section("cvrl", _Options)


def test_an_unregistered_method_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="method.*pcl.*vcop.*cvrl"):
        load_config(None, ["method=simclr"])


def test_the_registered_sections_do_not_leak_into_the_fixed_fields():
    assert "registered" not in Config().to_dict()
    assert "registered" not in config_yaml(load_config(None))
