"""The machine line of every benchmark's results file.

Timings on a 2-core machine depend on what else runs, so each results file states
the load average (1, 5 and 15 minutes) at the start and at the end of the run.
"""

from __future__ import annotations

import os
import platform


def load_average() -> tuple[float, float, float]:
    """``os.getloadavg()``: processes running or waiting, over 1, 5, 15 minutes."""
    return os.getloadavg()


def machine_line(load_before: tuple[float, float, float], extra: str = "") -> str:
    """``Machine: x86_64, 2 cores; load average before ..., after ...`` (+ extra)."""

    def fmt(load):
        return ", ".join(f"{v:.1f}" for v in load)

    cores = os.cpu_count()
    return (
        f"Machine: {platform.machine()}, {cores} cores; load average (1, 5, 15 min) "
        f"before: {fmt(load_before)}, after: {fmt(load_average())} (a value above {cores} "
        "means other processes shared the cores: timings are then upper bounds)"
        + (f"; {extra}" if extra else "")
        + "."
    )
