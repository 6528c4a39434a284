"""How many CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota.

In a container started with ``--cpus=2`` on a 64-core host, ``os.cpu_count()`` and even the
affinity say 64 while the kernel lets the container run 2 CPUs' worth of time, so 64 detection
processes (~200 MB each) would share 2 CPUs. The quota is in ``cpu.max`` (cgroup v2,
``"<quota> <period>"`` or ``"max <period>"``) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
(cgroup v1, quota -1 when unlimited), on the process's cgroup or any cgroup above it; the
tightest one counts. joblib's (loky's) ``cpu_count`` reads the root cgroup only, at fixed
paths, so it misses a quota set on a parent cgroup (systemd slices) and cannot be tested on a
file tree; hence these few lines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: affinity, capped by the cgroup quota rounded up; at least 1.

    :param cgroup_root: where the cgroup file systems are mounted
    :param proc_cgroup: the process's cgroup membership (``/proc/self/cgroup``)
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> float | None:
    """The tightest CPU quota, in CPUs, on the process's cgroup and its ancestors; None if none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            mount, read = cgroup_root, _v2_quota
        elif "cpu" in controllers.split(","):
            mount, read = cgroup_root / controllers, _v1_quota
            if not mount.is_dir():
                mount = cgroup_root / "cpu"
        else:
            continue
        quotas += [q for d in _ancestors(mount, path) if (q := read(d)) is not None]
    return min(quotas, default=None)


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The folders of the cgroup ``path`` under ``mount`` and of every cgroup above it."""
    parts = [p for p in path.split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
