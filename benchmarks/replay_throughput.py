"""Replay throughput against the bare engine on the same frames (issue 8 acceptance: >= 0.9x).

The bare engine is ``engine.infer(frame)`` on frames already decoded in memory (pre-processing,
trunk, task slots and post-processing to the frame's resolution). Replay is the whole of
``replay()``: reading and decoding the bag, the engine, post-processing, the node's colour image,
scoring against the bag's ground truth and writing every output message; it is also measured
without scoring (``evaluate=False``: outputs only). Rounds alternate between the three so a
neighbour's load hits all alike; the medians are compared.

Usage::

    python benchmarks/replay_throughput.py --model MODEL [--backend torch] [--frames 30]
    python benchmarks/replay_throughput.py --model MODEL --bag my.mcap --rounds 5 --zstd

Prints one JSON line: frames, rounds, frames/s per round of each, medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the shipped default model)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bag", help="camera bag to use (default: a synthetic drive with ground truth)")
    parser.add_argument("--frames", type=int, default=30, help="synthetic frames (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--zstd", action="store_true", help="compress the replay output")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    from perception.commands.replay import model_path
    from perception.data.synthetic import SynthConfig
    from perception.data.synthetic.bag_writer import write_bag
    from perception.evaluation.bag_io import open_camera_bag
    from perception.evaluation.replay import ReplayOptions, replay
    from perception.runtime.engine import PerceptionEngine
    from perception.training.run_dir import load_model_from

    torch.set_num_threads(args.threads)
    engine = PerceptionEngine(load_model_from(model_path(args.model)), args.backend,
                              threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tadp-replay-bench-"))
    try:
        bag = Path(args.bag) if args.bag else write_bag(
            tmp / "in", args.frames, 10.0, seed=3,
            config=SynthConfig(height=engine.input_size[0], width=engine.input_size[1]))
        with open_camera_bag(bag) as cam:
            frames = [f.image for f in cam]
        engine.infer(frames[0])  # warm-up
        engine_fps, replay_fps, outputs_fps = [], [], []
        compression = "zstd" if args.zstd else None
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for frame in frames:
                engine.infer(frame)
            engine_fps.append(len(frames) / (time.perf_counter() - t0))
            for evaluate, fps in ((True, replay_fps), (False, outputs_fps)):
                out = tmp / f"out{r}{evaluate}.mcap"
                result = replay(engine, bag, out,
                                ReplayOptions(compression=compression, evaluate=evaluate))
                fps.append(result.fps)
                out.unlink()
        e = statistics.median(engine_fps)
        p, q = statistics.median(replay_fps), statistics.median(outputs_fps)
        print(json.dumps({"frames": len(frames), "size": list(frames[0].shape[:2]),
                          "backend": engine.backend.describe(), "rounds": args.rounds,
                          "engine_fps": [round(v, 2) for v in engine_fps],
                          "replay_fps": [round(v, 2) for v in replay_fps],
                          "replay_no_eval_fps": [round(v, 2) for v in outputs_fps],
                          "engine_fps_median": round(e, 2), "replay_fps_median": round(p, 2),
                          "replay_no_eval_fps_median": round(q, 2),
                          "ratio": round(p / e, 3), "ratio_no_eval": round(q / e, 3)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
