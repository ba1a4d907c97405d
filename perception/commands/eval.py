"""``tadp eval``: metrics of a model (plus task bundles) on a dataset, as JSON and Markdown.

Examples::

    tadp eval --model runs/tiny --data synth_val --out reports/tiny_synth
    tadp eval --model runs/tiny/model.safetensors --bundle runs/corridor/corridor.tadtask \\
        --data synth_val --tasks corridor
    tadp eval --model runs/tiny --data cityscapes:../shared/data/real/mmseg_cityscapes,split=val

Frames are resized to the model input; predictions are scored at each label's own resolution
(docs/training.md, docs/metrics.md).
"""
from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model (+ bundles) on a dataset: JSON + Markdown",
                       description="Evaluate a model and task bundles on a dataset.")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="a `tadp train` run directory, a save_model .safetensors, or a checkpoint dir")
    p.add_argument("--bundle", action="append", default=[], metavar="PATH",
                   help="task bundle to load first (repeatable)")
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset ([KIND:]PATH[,k=v...])")
    p.add_argument("--tasks", metavar="A,B", help="tasks to evaluate (default: every task of the model)")
    p.add_argument("--max-samples", type=int, metavar="N", help="evaluate the first N samples only")
    p.add_argument("--batch-size", type=int, default=4, help="batch size (default 4)")
    p.add_argument("--workers", type=int, default=0, help="data-loader processes (default 0)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt", "auto"),
                   help="predict through the runtime engine on this backend (the path bag replay "
                        "takes, so the metrics equal replay's); default: the PyTorch model directly")
    p.add_argument("--precision", default="fp32", help="engine precision with --backend")
    p.add_argument("--no-intrinsics", action="store_true",
                   help="ignore the samples' camera intrinsics: depth keeps the training cameras' "
                        "scale instead of following each frame's focal length (as a node "
                        "without CameraInfo)")
    p.add_argument("--no-mounting", action="store_true",
                   help="ignore the samples' camera mounting: depth keeps the training cameras' "
                        "height instead of following each frame's (as a node without a mounting); "
                        "only models trained with a height rule (height_exponent > 0) use it")
    p.add_argument("--out", metavar="DIR", help="write DIR/metrics.json and DIR/metrics.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from perception.errors import ConfigError
    from perception.evaluation.evaluate import evaluate, metrics_markdown, open_dataset
    from perception.training.bundle import load_bundle_into, read_bundle
    from perception.training.run_dir import load_model_from, write_json

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.bf16:
        from perception.commands.train import warn_slow_bf16

        warn_slow_bf16("cpu")  # evaluate runs the model on the CPU
    model = load_model_from(args.model)
    for path in args.bundle:
        load_bundle_into(model, read_bundle(path))
    model.eval()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    dataset = open_dataset(args.data, max_samples=args.max_samples)
    engine = None
    if args.backend:
        from perception.runtime.engine import PerceptionEngine

        engine = PerceptionEngine(model, args.backend, tasks=tasks, precision=args.precision,
                                  threads=args.threads or 2)
    result = evaluate(model, dataset, tasks=tasks, batch_size=args.batch_size, num_workers=args.workers,
                      bf16=args.bf16, progress=not args.no_progress, engine=engine,
                      intrinsics=not args.no_intrinsics, mounting=not args.no_mounting)
    title = f"{model.cfg.name} on {args.data} ({result.samples} frames)"
    report = metrics_markdown(result.metrics, title)
    print(report, end="")
    if result.unlabelled:
        print(f"not scored (no labels in {args.data}): {', '.join(result.unlabelled)}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", {
            "model": str(args.model), "bundles": [str(b) for b in args.bundle], "data": args.data,
            "tasks": tasks or list(model.tasks), "samples": result.samples,
            "seconds": round(result.seconds, 2), "input_size": list(model.cfg.input_size),
            "unlabelled": result.unlabelled, "intrinsics": not args.no_intrinsics,
            "mounting": not args.no_mounting,
            "metrics": result.metrics})
        (out / "metrics.md").write_text(report, encoding="utf-8")
        print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0
