"""What the benchmark ran on: CPU, cores, memory, disk, OS, Python, SQLite, package versions."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _disk(path: Path) -> str:
    """The device, filesystem and kind (rotational or not) that ``path`` lives on."""
    best = None
    for part in psutil.disk_partitions(all=True):
        if str(path).startswith(part.mountpoint) and (
            best is None or len(part.mountpoint) > len(best.mountpoint)
        ):
            best = part
    if best is None:
        return "unknown"
    kind = ""
    name = Path(best.device).name
    rotational = Path(f"/sys/block/{name.rstrip('0123456789')}/queue/rotational")
    if rotational.exists():
        kind = ", rotational" if rotational.read_text().strip() == "1" else ", non-rotational"
    usage = psutil.disk_usage(str(path))
    warning = " (a RAM disk: fsync costs nothing here)" if best.fstype == "tmpfs" else ""
    return (f"{best.device} ({best.fstype}{kind}) mounted on {best.mountpoint}, "
            f"{usage.total / 2**30:.0f} GiB{warning}")


def load() -> str:
    """The load averages (1, 5, 15 minutes) and how busy the CPUs were over the last second."""
    one, five, fifteen = os.getloadavg()
    busy = psutil.cpu_percent(interval=1.0)
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (CPUs {busy:.0f} % busy over 1 s)"


def describe(workdir: Path) -> dict[str, Any]:
    """The machine, the disk of ``workdir`` and the load before the run."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "disk": _disk(workdir),
        "os": f"{_os_name()} (kernel {platform.release()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "load_before": load(),
    }


def commit() -> str:
    """The jobkit commit measured (``git describe --always --dirty``), or ``unknown``."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def versions() -> dict[str, str]:
    """Every package installed in this (the bench) environment, by name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))
