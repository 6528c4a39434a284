"""The CPUs a process may use, read from cgroup file trees laid out as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

from anfe.centroids.cpus import cgroup_cpu_quota, usable_cpus


def tree(root: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/sys/fs/cgroup`` under ``root`` and a ``/proc/self/cgroup`` naming ``membership``."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = root.parent / f"{root.name}-proc-cgroup"
    proc.write_text(membership)
    return root, proc


def test_v2_container_quota_of_two_cpus(tmp_path):
    root, proc = tree(tmp_path / "cg", "0::/\n", {"cpu.max": "200000 100000\n"})
    assert cgroup_cpu_quota(root, proc) == 2.0


def test_v2_fraction_rounds_up_and_never_exceeds_the_affinity(tmp_path):
    root, proc = tree(tmp_path / "cg", "0::/\n", {"cpu.max": "50000 100000\n"})
    assert cgroup_cpu_quota(root, proc) == 0.5
    assert usable_cpus(root, proc) == 1
    root, proc = tree(tmp_path / "big", "0::/\n", {"cpu.max": "6400000 100000\n"})
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_v2_unlimited_is_no_quota(tmp_path):
    root, proc = tree(tmp_path / "cg", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_v2_quota_on_a_parent_cgroup_counts(tmp_path):
    root, proc = tree(
        tmp_path / "cg",
        "0::/system.slice/anfe.service\n",
        {
            "system.slice/cpu.max": "100000 100000\n",
            "system.slice/anfe.service/cpu.max": "max 100000\n",
        },
    )
    assert cgroup_cpu_quota(root, proc) == 1.0
    assert usable_cpus(root, proc) == 1


def test_v1_cfs_quota(tmp_path):
    root, proc = tree(
        tmp_path / "cg",
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(root, proc) == 1.5
    root, proc = tree(
        tmp_path / "unlimited",
        "4:cpu,cpuacct:/\n",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_quota(root, proc) is None


def test_no_cgroup_files_is_the_affinity(tmp_path):
    assert cgroup_cpu_quota(tmp_path / "none", tmp_path / "no-proc-file") is None
    assert usable_cpus(tmp_path / "none", tmp_path / "no-proc-file") == len(os.sched_getaffinity(0))


def test_service_and_build_size_their_processes_with_it():
    from anfe.app.settings import Settings
    from anfe.centroids.builder.workers import default_jobs

    assert Settings().cpu_workers == usable_cpus() == default_jobs()
