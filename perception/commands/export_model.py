"""``tadp export-model``: a model file from a training checkpoint.

A run paused with ``--stop-at``, SIGTERM or Ctrl-C has checkpoints and no model file; this writes
one (``X.safetensors`` + ``X.yaml``, what the node, ``tadp eval`` and ``tadp train --init`` load),
the same file a finished run writes itself.

Examples::

    tadp export-model runs/r9/checkpoints/last --out runs/r9/model.safetensors
    tadp export-model runs/r9/checkpoints/best --out best.safetensors --overwrite
"""
from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-model", help="write a model file from a training checkpoint",
                       description="Write a model file (X.safetensors + X.yaml) from a `tadp train` "
                                   "checkpoint or run, e.g. of a paused run.")
    p.add_argument("source", metavar="CHECKPOINT",
                   help="a checkpoint directory (RUN/checkpoints/last or best), or a run directory "
                        "(its model file, else its best, else its last checkpoint)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors",
                   help="model file to write; its manifest goes beside it as FILE.yaml")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from perception.errors import ConfigError
    from perception.training.model_file import save_model
    from perception.training.run_dir import load_model_from, read_json

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {args.out!r}: a model file ends in .safetensors (its manifest "
                          "is written beside it as .yaml)")
    taken = [str(p) for p in (out, out.with_suffix(".yaml")) if p.exists()]
    if taken and not args.overwrite:
        raise ConfigError(f"{', '.join(taken)} already exist; pass --overwrite to replace them")
    model = load_model_from(args.source)  # ConfigError / CheckpointError say what is wrong
    path = save_model(model, out)
    state = Path(args.source) / "state.json"
    step = f" at step {read_json(state)['step']}" if state.is_file() else ""
    print(f"model{step} of {args.source}: {path} (+ {path.with_suffix('.yaml').name}); "
          f"tasks: {', '.join(model.task_names())}")
    return 0
