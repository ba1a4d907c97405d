"""Latency the perception node adds over the bare engine (issue 7; goal: p50 overhead <= 5 ms).

1. The bare engine: ``PerceptionEngine.infer`` on real 1280x720 BDD100K frames in this process
   (small random model, 128x256 input, torch, one thread - the node's test configuration).
2. The node: ``tadp node`` in its own process, this process publishing the same frames in
   lock-step (the next frame after the previous one's outputs arrived, so nothing queues) and
   subscribing every output (segmentation, its colour image, depth, drivable, lanes).

Reported per frame, p50 over ``--frames``:

``--topics`` picks the subscribed outputs (the node builds only what has a subscriber).

* ``overhead`` - the node's own measure: message received -> every output published, minus
  ``engine.infer`` for that frame (decode, colouring, message building, publishing);
* ``end to end`` - camera stamp -> the last output received here, which adds DDS both ways;
  ``e2e - bare engine`` compares it with step 1.

Usage::

    python benchmarks/node_latency.py                      # raw bgr8, 60 frames
    python benchmarks/node_latency.py --transport compressed --frames 100
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if "node_bench" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("node_bench", _HERE / "node_bench.py")
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["node_bench"] = _mod
    _spec.loader.exec_module(_mod)
bench = sys.modules["node_bench"]

TOPICS = list(bench.BASE_OUTPUTS)


def bare_engine_ms(frames: int, backend: str, threads: int) -> list[float]:
    from perception.runtime.engine import PerceptionEngine
    from tests.runtime.conftest import make_model

    images = bench.real_frames(3)
    engine = PerceptionEngine(make_model(), backend, threads=threads)
    for image in images:
        engine.infer(image)  # warm-up
    out = []
    for i in range(frames):
        t0 = time.perf_counter()
        engine.infer(images[i % len(images)])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def node_figures(frames: int, transport: str, backend: str, threads: int, workdir: Path,
                 topics: list[str] = TOPICS) -> dict[str, float]:
    import rclpy

    domain = bench.pick_domain()
    ctx = bench.open_context(domain)
    params = bench.write_params(workdir / "latency.yaml", bench.base_params(
        bench.make_model_file(workdir), workdir / "cache", backend=backend, threads=threads,
        latency_window=frames, **{"input.transport": transport}))
    proc = bench.NodeProcess(params, domain, workdir / "latency.log", how="tadp")
    probe = bench.Probe(ctx, topics, name="latency_probe")
    executor, thread = bench.spin_in_thread(ctx, probe.node)
    compressed = transport == "compressed"
    try:
        if not probe.wait_for(lambda p: p.diagnostics and p.diagnostics[-1]["engine"] == "ready", 120):
            raise RuntimeError(f"node did not start:\n{proc.log_text()}")
        if not probe.wait_matched(compressed=compressed):
            raise RuntimeError("node never subscribed")
        images = bench.real_frames(3)
        bench.lockstep(probe, images, 3, compressed=compressed)  # warm-up; the window is 'frames'
        stamps = []
        for i in range(frames):
            (stamp,) = bench.lockstep(probe, images[i % 3:i % 3 + 1], 1, compressed=compressed)
            probe.wait_for(lambda p, s=stamp: all(s in [r.stamp_ns for r in p.outputs[t]]
                                                  for t in topics), 5)
            stamps.append(stamp)
        want = str(frames + 3)
        probe.wait_for(lambda p: p.last_diag()["frames_processed"] == want, 5)
        diag = probe.last_diag()
    finally:
        proc.stop()
        executor.shutdown()
        thread.join(5)
        probe.node.destroy_node()
        rclpy.shutdown(context=ctx)
    last = {}
    for topic in topics:
        for r in probe.outputs[topic]:
            last[r.stamp_ns] = max(last.get(r.stamp_ns, 0), r.recv_ns)
    e2e = [(last[s] - s) / 1e6 for s in stamps if s in last]
    return {"engine_p50_ms": float(diag["engine_p50_ms"]), "node_p50_ms": float(diag["node_p50_ms"]),
            "overhead_p50_ms": float(diag["overhead_p50_ms"]),
            "latency_p50_ms": float(diag["latency_p50_ms"]), "e2e_p50_ms": bench.pct(e2e, 50),
            "frames": float(len(e2e))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topics", nargs="+", default=TOPICS, choices=TOPICS,
                        help="outputs subscribed (the node builds only those)")
    args = parser.parse_args()
    bare = bench.pct(bare_engine_ms(args.frames, args.backend, args.threads), 50)
    with tempfile.TemporaryDirectory(prefix="tadp_latency_") as workdir:
        node = node_figures(args.frames, args.transport, args.backend, args.threads,
                            Path(workdir), args.topics)
    print("| input | bare engine p50 ms | node: engine p50 | receive->published p50 | "
          "overhead p50 (goal <= 5) | stamp->published p50 | e2e at subscriber p50 | "
          "e2e - bare engine |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| 1280x720 {args.transport}, {int(node['frames'])} frames, "
          f"{len(args.topics)} outputs | {bare:.1f} | "
          f"{node['engine_p50_ms']:.1f} | {node['node_p50_ms']:.1f} | "
          f"**{node['overhead_p50_ms']:.1f}** | {node['latency_p50_ms']:.1f} | "
          f"{node['e2e_p50_ms']:.1f} | {node['e2e_p50_ms'] - bare:.1f} |")


if __name__ == "__main__":
    main()
