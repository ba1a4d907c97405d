"""A camera faster than the node: latency stays bounded, drops are counted, memory stays flat
(issue 7, acceptance). Runs ``benchmarks/node_overload.py`` with 300 raw 720p frames at 30 Hz
against ``tadp node`` in another process (~20 s). The 2,000-frame figure is in docs/ros_node.md.

Latency here is a behaviour, not a timing: the node must not queue. A node that queued every
frame instead of dropping would be seconds behind by the end of the run, so the test requires
p99 to stay under a quarter of that backlog. The tight figure (p99 <= 2 x engine p99 + one
period, which a loaded or shared machine can miss by a few ms) is the benchmark's to report.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
FRAMES, RATE_HZ = 300, 30.0
MAX_GROWTH_MB = 40.0  # after warm-up; allocator noise on 300 frames is a few MB


@pytest.fixture(scope="module")
def overload():
    spec = importlib.util.spec_from_file_location("node_overload", REPO / "benchmarks" / "node_overload.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("node_overload", module)  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_overload_latency_bounded_drops_counted_memory_flat(overload, real_data, tmp_path):
    r = overload.run(FRAMES, RATE_HZ, "raw", workdir=tmp_path)
    table = overload.markdown([r])
    print(table)
    # Every frame is accounted for: lost before the node (a sequence gap: transport or reader
    # queue; none expected here, but counted if it happens), or received and then processed or
    # dropped because a newer one arrived. The last frames may leave no gap behind them.
    assert r.sent == FRAMES and FRAMES - 2 <= r.received + r.lost <= FRAMES, table
    assert r.received - 1 <= r.processed + r.dropped <= r.received, table
    assert r.dropped > 0 and r.processed < FRAMES, table  # it really was overloaded
    assert r.outputs >= r.processed - 1, table  # every processed frame published every output
    backlog_ms = 1e3 * (FRAMES / RATE_HZ) * r.dropped / r.received  # a queueing node, at the end
    assert backlog_ms > 4 * r.bound_ms, table  # the check below can tell queueing from not
    assert r.latency_p99_ms <= backlog_ms / 4, table
    assert r.node_latency_p99_ms <= backlog_ms / 4, table
    assert r.growth_mb <= MAX_GROWTH_MB, table
