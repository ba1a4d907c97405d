"""``tadp build-engine``: build the TensorRT trunk and slot engines offline into the cache
(docs/tensorrt.md).

Examples::

    tadp build-engine --model runs/tiny/model.safetensors --precision fp16
    tadp build-engine --model model.safetensors --input-size 384x640 --tasks segmentation,lanes \\
        --bundle adapters/corridor.tadtask --cache-dir /var/cache/tad_perception

It runs the same code path as the node (``PerceptionEngine`` on the ``tensorrt`` backend), so the
cache keys match and the node's first start only loads. Build it on the device that will run it:
engines are specific to the GPU and the TensorRT / torch-tensorrt versions. ``--config`` builds a
model with seeded random weights: useful to check the toolchain, useless for deployment (the trunk
fingerprint is part of the key). Exits 0 when every engine is in the cache, 2 otherwise.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["register"]

_LOGGER = "perception.runtime.trt_backend"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-engine", help="build TensorRT engines into the cache (offline)",
                       description="Build the TensorRT trunk and slot engines of a model into the "
                                   "engine cache, so the node starts without building.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, metavar="PATH",
                     help="model file written by save_model (X.safetensors or X.yaml)")
    src.add_argument("--config", metavar="NAME", help="shipped config name or YAML path "
                                                      "(seeded random weights: toolchain checks)")
    p.add_argument("--input-size", metavar="HxW", help="network input (default: the model's)")
    p.add_argument("--precision", default="fp16", choices=("fp16", "fp32"),
                   help="engine precision (default fp16: fp32 LayerNorm, fp32 accumulation)")
    p.add_argument("--tasks", metavar="A,B", help="tasks to build slots for (default: all)")
    p.add_argument("--bundle", action="append", default=[], metavar="PATH",
                   help="task bundle to add first, so its slot is built too (repeatable)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="cache root (default: $TADP_CACHE_DIR or ~/.cache/tad_perception)")
    p.set_defaults(func=run)


class _LineHandler(logging.Handler):
    """One line per record on stderr, through ``tqdm.write`` when tqdm is installed so progress
    bars of a calling script are not garbled."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = self.format(record)
        try:
            from tqdm import tqdm
        except ImportError:
            print(msg, file=sys.stderr, flush=True)
        else:
            tqdm.write(msg, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from perception.data.synthetic.config import parse_size

    size = parse_size(args.input_size) if args.input_size else None  # validate before heavy work
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None

    import torch

    from perception.config import load_config
    from perception.errors import BackendError, ConfigError
    from perception.models.network import MultiTaskNet
    from perception.runtime.engine import PerceptionEngine
    from perception.runtime.trt_backend import TrtBackend
    from perception.training.bundle import load_bundle_into, read_bundle
    from perception.training.model_file import load_model

    logger = logging.getLogger(_LOGGER)
    if not logger.handlers:
        handler = _LineHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    backend = TrtBackend(precision=args.precision, cache_dir=args.cache_dir)  # fails fast w/o GPU
    if args.model is not None:
        model = load_model(args.model)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = MultiTaskNet(load_config(args.config)).eval()
        print(f"note: --config {args.config!r} builds a model with seeded random weights; its "
              "engines only serve that model (the trunk fingerprint is in the cache key)")
    for path in args.bundle:
        load_bundle_into(model, read_bundle(path))
    if tasks is not None:
        unknown = [t for t in tasks if t not in model.tasks]
        if unknown:
            raise ConfigError(f"--tasks {unknown} are not tasks of the model; tasks: "
                              f"{model.task_names()}")
        for t in tasks:
            missing = [s for s in model.tasks[t].sources if s not in tasks]
            if missing:
                raise ConfigError(f"task {t!r} fuses {missing}: add them to --tasks")
    print(f"building for {backend.describe()} into {backend.engine_dir}")
    PerceptionEngine(model, backend, input_size=size, tasks=tasks)
    for r in backend.records:
        where = r.path if r.cached else "NOT CACHED"
        print(f"{r.action:<7} {r.kind:<26} {r.seconds:7.1f} s  {where}")
    if not all(r.cached for r in backend.records):
        raise BackendError("some engines could not be written to the cache (see the warnings)")
    return 0
