"""Describe the machine a benchmark ran on (stated beside every table)."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def describe() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, no GPU; Python {platform.python_version()}, "
        f"TensorFlow {metadata.version('tensorflow')}, Keras {metadata.version('keras')}"
    )
