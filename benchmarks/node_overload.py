"""Overload the perception node: a camera faster than inference (issue 7, acceptance).

The node runs as ``tadp node --params F`` in its own process with the small random model
(128x256 input, torch, one thread); this process publishes real BDD100K frames (raw bgr8 or JPEG)
at ``--rate`` Hz and subscribes every output. With latest-frame-wins the node must drop frames
(and count them), keep the latency bounded - a frame waits at most for the frame in progress, so
``latency p99 <= 2 x engine p99 + one input period`` - and keep its memory flat.

Usage::

    python benchmarks/node_overload.py                    # 2000 frames at 30 Hz (~70 s)
    python benchmarks/node_overload.py --frames 300 --rate 30 --transport compressed

Prints a Markdown table; ``tests/ros2_nodes/test_node_overload.py`` runs the same with 300 frames.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if "node_bench" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("node_bench", _HERE / "node_bench.py")
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["node_bench"] = _mod
    _spec.loader.exec_module(_mod)
bench = sys.modules["node_bench"]

TOPICS = list(bench.BASE_OUTPUTS)


@dataclass
class OverloadResult:
    frames: int
    rate_hz: float
    transport: str
    sent: int
    received: int  # by the node (its counter)
    processed: int
    dropped: int  # replaced while the node was busy (latest frame wins)
    lost: int  # sequence gaps before the node (transport / reader queue)
    outputs: int  # frames with every output at the probe
    duration_s: float
    latency_p50_ms: float  # stamp -> last output of the frame received here (end to end)
    latency_p99_ms: float
    node_latency_p99_ms: float  # the node's own figure (stamp -> published), last window
    engine_p50_ms: float
    engine_p99_ms: float
    rss_start_mb: float
    rss_warm_mb: float  # after the first third of the run
    rss_end_mb: float
    error: str = ""

    @property
    def bound_ms(self) -> float:
        return 2 * self.engine_p99_ms + 1e3 / self.rate_hz

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_warm_mb


def run(frames: int = 2000, rate_hz: float = 30.0, transport: str = "raw",
        workdir: Path | None = None, size: tuple[int, int] | None = None,
        backend: str = "torch", threads: int = 1) -> OverloadResult:
    import rclpy

    workdir = Path(workdir or tempfile.mkdtemp(prefix="tadp_overload_"))
    domain = bench.pick_domain()
    ctx = bench.open_context(domain)
    params = bench.write_params(workdir / "overload.yaml", bench.base_params(
        bench.make_model_file(workdir), workdir / "cache", backend=backend, threads=threads,
        latency_window=max(frames, 300), **{"input.transport": transport}))
    proc = bench.NodeProcess(params, domain, workdir / "overload.log", how="tadp")
    probe = bench.Probe(ctx, TOPICS, name="overload_probe")
    executor, thread = bench.spin_in_thread(ctx, probe.node)
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    compressed = transport == "compressed"
    try:
        if not probe.wait_for(lambda p: p.diagnostics and p.diagnostics[-1]["engine"] == "ready", 120):
            raise RuntimeError(f"node did not start:\n{proc.log_text()}")
        if not probe.wait_matched(compressed=compressed):
            raise RuntimeError("node never subscribed")
        images = bench.real_frames(3, size=size)
        bench.lockstep(probe, images, 3, compressed=compressed)  # warm-up, not counted
        with probe.lock:
            for recs in probe.outputs.values():
                recs.clear()
        if not probe.wait_for(lambda p: p.last_diag()["frames_processed"] == "3", 10):
            raise RuntimeError(f"warm-up frames not counted: {probe.last_diag()}")
        base = probe.last_diag()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                rss.append((time.monotonic() - t0, proc.rss_mb()))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent = bench.stream(probe, images, rate_hz, frames, compressed=compressed)
        duration = time.monotonic() - t0
        # the last frame's outputs and a diagnostics message that counted every frame
        want = int(base["frames_received"]) + frames
        probe.wait_for(lambda p: int(p.last_diag()["frames_received"]) >= want, 5.0)
        time.sleep(1.0)
        stop.set()
        sampler.join(2)
        diag = probe.last_diag()
    finally:
        stop.set()
        proc.stop()
        executor.shutdown()
        thread.join(5)
        probe.node.destroy_node()
        rclpy.shutdown(context=ctx)

    sent_set = set(sent)
    last: dict[int, int] = {}
    counts: dict[int, int] = {}
    for topic in TOPICS:
        for r in probe.outputs[topic]:
            if r.stamp_ns in sent_set:
                last[r.stamp_ns] = max(last.get(r.stamp_ns, 0), r.recv_ns)
                counts[r.stamp_ns] = counts.get(r.stamp_ns, 0) + 1
    complete = [s for s, n in counts.items() if n == len(TOPICS)]
    lat = [(last[s] - s) / 1e6 for s in complete]

    def delta(key: str) -> int:
        return int(diag[key]) - int(base[key])

    third = [mb for t, mb in rss if t >= duration / 3]
    return OverloadResult(
        frames=frames, rate_hz=rate_hz, transport=transport, sent=len(sent),
        received=delta("frames_received"), processed=delta("frames_processed"),
        dropped=delta("frames_dropped"), lost=delta("frames_lost"), outputs=len(complete),
        duration_s=duration, latency_p50_ms=bench.pct(lat, 50), latency_p99_ms=bench.pct(lat, 99),
        node_latency_p99_ms=float(diag["latency_p99_ms"]),
        engine_p50_ms=float(diag["engine_p50_ms"]), engine_p99_ms=float(diag["engine_p99_ms"]),
        rss_start_mb=rss[0][1] if rss else float("nan"),
        rss_warm_mb=third[0] if third else float("nan"),
        rss_end_mb=rss[-1][1] if rss else float("nan"))


def markdown(results: list[OverloadResult]) -> str:
    head = ("| frames @ rate | transport | received | processed | dropped | lost | output Hz | "
            "latency p50 / p99 ms | bound 2xengine p99 + period | engine p50 / p99 ms | "
            "RSS start / after 1/3 / end MB | growth MB |")
    rows = [head, "|" + "---|" * 12]
    for r in results:
        rows.append(
            f"| {r.sent} @ {r.rate_hz:.0f} Hz | {r.transport} | {r.received} | {r.processed} | "
            f"{r.dropped} | {r.lost} | {r.processed / r.duration_s:.1f} | "
            f"{r.latency_p50_ms:.0f} / {r.latency_p99_ms:.0f} | {r.bound_ms:.0f} | "
            f"{r.engine_p50_ms:.0f} / {r.engine_p99_ms:.0f} | "
            f"{r.rss_start_mb:.0f} / {r.rss_warm_mb:.0f} / {r.rss_end_mb:.0f} | {r.growth_mb:+.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tadp_overload_") as workdir:
        result = run(args.frames, args.rate, args.transport, Path(workdir), backend=args.backend,
                     threads=args.threads)
    print(markdown([result]))


if __name__ == "__main__":
    main()
