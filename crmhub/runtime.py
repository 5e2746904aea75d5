"""Process-wide settings of crmhub's commands and server: how often the garbage collector runs."""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_garbage_collector"]

# A sync allocates millions of short-lived containers (payloads, rows, typed values) that reference
# counting frees; cycles are rare (storing 30,000 records, the collector found about 6,000 objects
# in cycles over 1,266 runs). At CPython's default thresholds (700, 10, 10) it still ran every 700
# allocations, and each older run walked every long-lived object (mapper state, compiled
# statements): 12-20% of the CPU of storing a page (bench/ingest.py, BENCHMARKS.md).
THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Run the collector every 50,000 allocations, not 700, and never over what start-up built."""
    # What exists now (modules, classes, the command's objects) lives as long as the process.
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
