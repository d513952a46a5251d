"""Resident memory and CPU time of one phase of a benchmark, for the scripts beside it.

bench_frozen.py, bench_finetune.py and peak_memory.py import it. TensorFlow stays out of here:
peak_memory.py takes its baseline after its own imports, and this module must add nothing
to it.

The peak of a phase is the larger of a VmHWM reset (`echo 5 > /proc/self/clear_refs`) and a
thread sampling VmRSS every 10 ms; ru_maxrss cannot be used per phase (it never goes down).
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is None:  # not Linux: fall back on the (monotonic) high-water mark
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kb * 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


class RssMonitor:
    """Peak resident memory of the code inside `with`: VmHWM reset + a 10 ms VmRSS sampler.

    Also the CPU seconds it used: the work done, which, unlike wall time, does not depend on
    how many cores the VM hands out at the moment.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self.cpu_s = 0.0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssMonitor:
        gc.collect()
        self.hwm_reset = reset_hwm()
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.cpu_s = cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = cpu_seconds() - self.cpu_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        hwm = _status_kb("VmHWM")
        if self.hwm_reset and hwm is not None:
            self.peak = max(self.peak, hwm * 1024)

    @property
    def method(self) -> str:
        return "VmHWM reset + 10 ms VmRSS sampler" if self.hwm_reset else "10 ms VmRSS sampler"

    def summary(self) -> dict[str, Any]:
        return {
            "rss_start_mb": round(self.start / MB, 1),
            "rss_peak_mb": round(self.peak / MB, 1),
            "peak_growth_mb": round((self.peak - self.start) / MB, 1),
            "cpu_s": round(self.cpu_s, 1),
        }
