"""``tadp benchmark``: latency tables (default) and ``tadp benchmark hotswap``."""
from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="latency/FPS/RSS tables and the hot-swap benchmark",
                       description="Measure end-to-end latency per backend, task count and size "
                                   "(one shared trunk vs separate single-task models), or the "
                                   "hot-swap frame loop with `tadp benchmark hotswap`.")
    p.add_argument("what", nargs="?", default="latency", choices=("latency", "hotswap"))
    p.add_argument("--model", help="model file (default: the shipped default model, else "
                                   "--config with random weights)")
    p.add_argument("--config", default="tiny", help="config when no model file is used")
    p.add_argument("--backend", default="onnxruntime,torch",
                   help="comma-separated: torch, onnxruntime, tensorrt")
    p.add_argument("--size", action="append", help="HxW, repeatable (default: model's)")
    p.add_argument("--tasks", default="1,2,4", help="comma-separated task counts")
    p.add_argument("--precision", default="fp32", help="fp32 | int8 (onnxruntime) | fp16 (tensorrt)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, help="hotswap: stop after this many frames")
    p.add_argument("--cycles", type=int, default=1, help="hotswap: add/replace/remove cycles")
    p.add_argument("--rate", type=float, default=10.0, help="hotswap: frame rate (Hz)")
    p.add_argument("--no-separate", action="store_true", help="skip the separate-models rows")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _model(args: argparse.Namespace):
    from perception.models.network import MultiTaskNet
    from perception.runtime.default_model import default_model_path

    if args.model:
        from perception.training.model_file import load_model

        return load_model(args.model)
    path = default_model_path()
    if path is not None and args.config == "tiny":
        from perception.training.model_file import load_model

        return load_model(path)
    from perception.config import load_config

    return MultiTaskNet(load_config(args.config)).eval()


def _frame(size: tuple[int, int]):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(720, 1280, 3), dtype=np.uint8)


def run(args: argparse.Namespace) -> int:
    from perception.data.synthetic.config import parse_size
    from perception.runtime import benchmark as bench

    sizes = [parse_size(t) for t in args.size or []]  # validate before loading anything
    model = _model(args)
    sizes = sizes or [tuple(model.cfg.input_size)]
    frame = _frame(sizes[0])
    if args.what == "hotswap":
        from perception.runtime.engine import PerceptionEngine

        tmp, bundles = bench.temp_bundles(model)
        with tmp:
            backend = args.backend.split(",")[0]
            eng = PerceptionEngine(model, backend, input_size=sizes[0], threads=args.threads,
                                   precision=args.precision)
            rep = bench.hotswap_loop(eng, frame, bundles, rate_hz=args.rate, cycles=args.cycles,
                                     frames=args.frames)
        if args.json:
            print(json.dumps(rep.to_dict(), indent=2))
            return 0
        print(f"hot-swap at {rep.rate_hz:g} Hz on {backend}: {rep.frames} frames, "
              f"{rep.late} late, {rep.skipped} skipped, other tasks identical: "
              f"{rep.others_identical}, RSS {rep.rss_start_mb:.0f} -> {rep.rss_warm_mb:.0f} (after the first "
              f"cycle) -> {rep.rss_end_mb:.0f} MB")
        marks = sorted({0, 9, 49, 99, len(rep.rss_cycles_mb) - 1} & set(range(len(rep.rss_cycles_mb))))
        print("RSS after cycle " + ", ".join(f"{i + 1}: {rep.rss_cycles_mb[i]:.0f}" for i in marks) + " MB")
        print(f"{'operation':<14}{'ok':>4}{'call ms':>10}{'first output ms':>17}{'its frame age ms':>18}"
              f"{'to next frame ms':>18}{'of it clock wait ms':>22}  message")

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        for o in rep.operations:
            print(f"{o['operation']:<14}{str(o['ok']):>4}{o['call_ms']:>10.1f}{ms(o['first_output_ms']):>17}"
                  f"{ms(o['first_output_frame_age_ms']):>18}{ms(o['to_first_frame_ms']):>18}"
                  f"{ms(o['clock_wait_ms']):>22}  {o['message'][:80]}")
        return 0
    counts = [int(c) for c in args.tasks.split(",")]
    if max(counts) > len(model.task_names()):
        from perception.errors import ConfigError

        raise ConfigError(f"--tasks asks for {max(counts)} tasks; the model has "
                          f"{len(model.task_names())}: {model.task_names()}")
    if not args.json:
        print(bench.TABLE_HEADER)
    rows = bench.latency_table(model, frame, args.backend.split(","), sizes, counts,
                               runs=args.runs, threads=args.threads, precision=args.precision,
                               separate=not args.no_separate,
                               log=(lambda s: None) if args.json else print)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0
