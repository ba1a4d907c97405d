"""Backend agreement on real frames (issue 6): the same model through the torch and ONNX Runtime
engines; argmax agreement of every class-id output and the largest relative depth difference.

Acceptance: argmax agreement >= 99.9 %, depth relative difference <= 1e-3.

Usage::

    python benchmarks/backend_agreement.py                                 # default model, 5 frames
    python benchmarks/backend_agreement.py --frames 'data/*.jpg' --n 20 --model run/model.safetensors
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import cv2
import numpy as np

from perception.runtime.default_model import DEFAULT_MODEL
from perception.runtime.engine import PerceptionEngine
from perception.training.model_file import load_model

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "yolop_bdd100k"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--frames", default=str(REAL / "**" / "*.jpg"), help="glob of BGR images")
    p.add_argument("--n", type=int, default=5)
    a = p.parse_args()
    files = sorted(glob.glob(a.frames, recursive=True))[: a.n]
    if not files:
        raise SystemExit(f"no frames match {a.frames!r}")
    engines = [PerceptionEngine(load_model(a.model), b, threads=1) for b in ("torch", "onnxruntime")]
    agree = total = 0
    rel = 0.0
    for f in files:
        ref, other = (e.infer(cv2.imread(f)) for e in engines)
        for name, x in ref.raw.items():
            y = other.raw[name]
            if x.dtype == np.uint8:
                agree, total = agree + int((x == y).sum()), total + x.size
            else:
                rel = max(rel, float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-6))))
    print(f"{len(files)} frames: argmax agreement {agree / total:.4%} over {total} pixels; "
          f"depth max relative difference {rel:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
