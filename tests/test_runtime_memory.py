"""`keep_freed_memory`: training steps stop page-faulting their activations in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

STEP_FAULTS = """
import resource, sys, torch
from vidkd.models import build_backbone
from vidkd.utils.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.manual_seed(0)
net = build_backbone("r21d", width=0.25).to(memory_format=torch.channels_last_3d)
clips = torch.randn(4, 3, 8, 48, 48)
def step():
    net.zero_grad(set_to_none=True)
    net(clips).sum().backward()
for _ in range(4):  # the heap grows to its working size
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _faults_per_step(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keeping_freed_memory_stops_the_page_faults_of_each_step():
    default, kept = _faults_per_step("default"), _faults_per_step("keep")
    # measured: about 5,500 faults per step by default, under 1 with the memory kept
    assert default > 1000, default
    assert kept < default / 10, (default, kept)
