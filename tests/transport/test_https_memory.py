"""Issue 9's memory bound: a mask round at n = 3, d = 1e7 over HTTPS.

The server's peak memory growth during the round (tracemalloc, NumPy
buffers included) must stay under 4x the request bytes it received. The
round itself runs in ``bench/transport_memory.py`` (sites in a child
process), which prints the same numbers as a table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "transport_memory.py"


def test_mask_round_at_ten_million_keeps_server_memory_under_four_times_the_bytes_received():
    spec = importlib.util.spec_from_file_location("transport_memory", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("transport_memory", bench)
    spec.loader.exec_module(bench)
    m = bench.measure(10_000_000)
    assert m.sites_exit_code == 0 and m.survivors == 3
    assert m.received > 3 * 10_000_000 * 2  # three full masked updates really travelled
    assert m.peak_growth < 4 * m.received
