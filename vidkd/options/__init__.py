"""The option sections of a run config that belong to a method or to distillation.

Each is a dataclass in its owner's module here, with `check(cfg)` refusing values its owner could not
use. A method's section names its config key (`SECTION`) and its method (`METHOD`); `METHOD_SECTIONS`
is the registry `vidkd.config` builds `Config` from, so config.py names no method. These modules
import only `vidkd.errors` and the protocol registry, and no torch (an import contract and a test check
it): a preset loads with `vidkd.config` alone (tests/test_packaging.py), and the method module
(`vidkd/methods/<name>.py`) imports its options from here.
"""

from __future__ import annotations

from vidkd.options.cvrl import CVRLConfig
from vidkd.options.distill import KD_WEIGHT_KEYS, TeacherConfig
from vidkd.options.pcl import SSLConfig
from vidkd.options.vcop import VCOPConfig

# one line per method: its options, in the order `config.yaml` writes them; the first is the default method
METHOD_SECTIONS: tuple[type, ...] = (SSLConfig, VCOPConfig, CVRLConfig)
METHOD_NAMES: tuple[str, ...] = tuple(section.METHOD for section in METHOD_SECTIONS)
SECTION_OF: dict[str, str] = {section.METHOD: section.SECTION for section in METHOD_SECTIONS}  # method -> its key

__all__ = ["KD_WEIGHT_KEYS", "METHOD_NAMES", "METHOD_SECTIONS", "SECTION_OF", "CVRLConfig", "SSLConfig", "TeacherConfig",
           "VCOPConfig"]
