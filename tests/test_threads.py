"""`usable_cpus` / `configure_threads`: the CPUs a process may use (affinity, cgroup quota) size torch's threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vidkd.utils.runtime import ThreadPlan, cgroup_cpu_quota, configure_threads, usable_cpus


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def no_cgroup(tmp_path):
    """An empty cgroup root and a /proc/self/cgroup that names nothing: no quota."""
    return {"root": tmp_path / "cgroup", "proc_cgroup": write(tmp_path / "proc_cgroup", "0::/\n")}


@pytest.fixture
def keep_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def ceiling() -> int:
    """What usable_cpus gives without a quota."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    return min(counts)


def test_cgroup_v2_quota_of_the_process_cgroup_and_its_parents(tmp_path):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", "0::/jobs/job7\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "jobs" / "job7" / "cpu.max", "250000 100000\n")
    assert cgroup_cpu_quota(root, proc) == 2.5
    write(root / "jobs" / "cpu.max", "150000 100000\n")  # a tighter quota above applies too
    assert cgroup_cpu_quota(root, proc) == 1.5
    write(root / "jobs" / "job7" / "cpu.max", "max 100000\n")
    write(root / "jobs" / "cpu.max", "max\n")
    assert cgroup_cpu_quota(root, proc) is None


def test_cgroup_v2_quota_at_the_root_as_in_a_container(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "100000 100000\n")
    assert cgroup_cpu_quota(root, write(tmp_path / "proc_cgroup", "0::/\n")) == 1.0
    assert usable_cpus(root, tmp_path / "proc_cgroup") == 1


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_cfs_quota(tmp_path, controller):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", f"4:memory:/x\n3:{controller}:/slurm/job1\n0::/\n")
    write(root / controller / "cpu.cfs_quota_us", "-1\n")
    write(root / controller / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, proc) is None
    write(root / controller / "slurm" / "job1" / "cpu.cfs_quota_us", "50000\n")
    write(root / controller / "slurm" / "job1" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, proc) == 0.5
    assert usable_cpus(root, proc) == 1  # half a CPU is still one thread


def test_a_quota_is_rounded_up_and_never_raises_the_count(tmp_path):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    write(root / "cpu.max", "1000000000 100000\n")  # 10,000 CPUs: the machine's own count wins
    assert usable_cpus(root, proc) == ceiling()
    if ceiling() >= 2:
        write(root / "cpu.max", "110000 100000\n")  # 1.1 CPUs -> 2
        assert usable_cpus(root, proc) == 2


@pytest.mark.parametrize("text", ["", "garbage\n", "0 100000\n", "-5 100000\n", "100000 0\n"])
def test_unreadable_or_odd_quota_files_are_ignored(tmp_path, text):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    write(root / "cpu.max", text)
    assert cgroup_cpu_quota(root, proc) is None
    assert usable_cpus(root, proc) == ceiling()


def test_no_cgroup_files_at_all(no_cgroup, tmp_path):
    assert cgroup_cpu_quota(tmp_path / "nowhere", tmp_path / "no_proc_file") is None
    assert usable_cpus(**no_cgroup) == ceiling()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks on this OS")
def test_the_affinity_mask_limits_the_cpus_and_the_threads(tmp_path):
    """A mask set after torch was imported: torch keeps its thread count, configure_threads follows the mask."""
    code = (
        "import os, sys, torch\n"
        "from vidkd.utils.runtime import configure_threads, usable_cpus\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "kw = dict(root=sys.argv[1], proc_cgroup=sys.argv[2])\n"
        "print(usable_cpus(**kw), torch.get_num_threads(), end=' ')\n"
        "plan = configure_threads(0, **kw)\n"
        "print(plan.intra_op, torch.get_num_threads())\n"
        "print(plan.describe())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cgroup"), str(proc)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    first, describe = result.stdout.strip().splitlines()
    cpus, torch_before, planned, torch_after = map(int, first.split())
    assert (cpus, planned, torch_after) == (1, 1, 1)
    assert torch_before == ceiling()  # torch sized its pool before the mask: it would oversubscribe the core
    assert describe == "vidkd: using 1 CPU (affinity 1, cgroup quota none): 1 intra-op thread, 0 data workers"


def test_configure_threads_takes_every_usable_cpu_whatever_the_workers(tmp_path, keep_threads):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    write(root / "cpu.max", "100000000 100000\n")  # 1000 CPUs: no limit in practice
    cpus = ceiling()
    torch.set_num_threads(1)
    plan = configure_threads(0, root=root, proc_cgroup=proc)
    assert (plan.cpus, plan.intra_op, plan.workers, plan.from_env) == (cpus, cpus, 0, False)
    assert torch.get_num_threads() == cpus
    plan = configure_threads(cpus + 3, root=root, proc_cgroup=proc)  # measured: workers take no core from it
    assert plan.intra_op == cpus == torch.get_num_threads() and plan.workers == cpus + 3
    assert plan.quota == 1000.0 and f"cgroup quota 1000): {cpus} intra-op" in plan.describe()
    assert plan.describe().endswith(f"{cpus + 3} data workers")


def test_a_quota_below_the_machine_sizes_the_threads(tmp_path, keep_threads):
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    write(root / "cpu.max", "50000 100000\n")
    plan = configure_threads(1, root=root, proc_cgroup=proc)
    assert (plan.cpus, plan.intra_op, plan.quota) == (1, 1, 0.5) and torch.get_num_threads() == 1
    assert "(affinity" in plan.describe() and "cgroup quota 0.5): 1 intra-op thread, 1 data worker" in plan.describe()


def test_omp_num_threads_is_the_users_choice(tmp_path, keep_threads, monkeypatch, no_cgroup):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    plan = configure_threads(0, **no_cgroup)
    assert plan.from_env and plan.intra_op == 1 == torch.get_num_threads()
    assert "1 intra-op thread (OMP_NUM_THREADS)" in plan.describe()


def test_the_plan_is_a_frozen_value():
    plan = ThreadPlan(cpus=2, intra_op=2, workers=2, affinity=2, quota=None)
    with pytest.raises(AttributeError):
        plan.cpus = 3  # type: ignore[misc]
    assert plan.describe() == "vidkd: using 2 CPUs (affinity 2, cgroup quota none): 2 intra-op threads, 2 data workers"
