"""Where a model's depth error comes from (issue 5's AbsRel target): AbsRel by semantic class and
by ground-truth range, each row's share of the total error, and the AbsRel left after scaling
every image by its median ratio gt/pred (what a perfect per-image scale would leave: the
structural part of the error).

Every Nth frame of a synthetic dataset (it needs segmentation labels), pixel-pooled, valid
depth in (0, max_depth_m) of the model's depth task and each frame's camera as ``tadp eval``
(``--no-intrinsics``: the training cameras' scale); predictions clipped to
[1e-3, max_depth_m]. Also a train-vs-val
gap: run it on both to tell under-fitting (close) from over-fitting (val far worse).

Usage::

    python benchmarks/depth_breakdown.py --data data/val
    python benchmarks/depth_breakdown.py --data data/train --frames 50 --model runs/r5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from perception.data.augment import Resize
from perception.data.sample import sample_focal_px
from perception.evaluation.evaluate import normalize_images, open_dataset
from perception.runtime.default_model import DEFAULT_MODEL
from perception.training.run_dir import load_model_from

RANGES_M = (0.0, 5.0, 10.0, 20.0, 40.0)  # then up to the task's max_depth_m


def _depth_task(model: torch.nn.Module) -> str:
    names = [n for n, t in model.tasks.items() if t.cfg.kind == "depth"]
    if not names:
        raise SystemExit("the model has no depth task")
    return names[0]


def _predict(model: torch.nn.Module, task: str, image: np.ndarray,
             focal_px: float | None = None) -> np.ndarray:
    x = normalize_images(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
    with torch.no_grad():
        raw = model(x)[task]
    slot = model.tasks[task]
    return slot.kind.postprocess(raw, slot.cfg, focal_px=focal_px)[0].numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model file, run or checkpoint directory")
    p.add_argument("--data", required=True, help="synthetic dataset directory (with segmentation)")
    p.add_argument("--frames", type=int, default=50, help="frames used, spread evenly (default 50)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-intrinsics", action="store_true",
                   help="ignore the frames' intrinsics (as tadp eval --no-intrinsics)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model_from(a.model).eval()
    task = _depth_task(model)
    max_m = model.tasks[task].cfg.max_depth_m
    ranges = [r for r in RANGES_M if r < max_m] + [max_m]
    data = open_dataset(a.data, transform=Resize(tuple(model.cfg.input_size)))
    classes = [c["name"] for c in json.loads((Path(a.data) / "dataset.json").read_text())["classes"]]
    idx = np.linspace(0, len(data) - 1, min(a.frames, len(data))).round().astype(int)

    rel, cls, gts, scaled = [], [], [], []
    for i in idx:
        s = data[int(i)]
        if "segmentation" not in s or "depth" not in s:
            raise SystemExit(f"frame {i} of {a.data} lacks segmentation or depth labels")
        focal = None if a.no_intrinsics else sample_focal_px(s, s["image"].shape[0])
        pred = _predict(model, task, s["image"], focal)
        gt = s["depth"]
        v = np.isfinite(gt) & (gt > 0) & (gt < max_m)
        p_v, g_v = np.clip(pred[v], 1e-3, max_m), gt[v]
        rel.append(np.abs(p_v - g_v) / g_v)
        cls.append(s["segmentation"][v])
        gts.append(g_v)
        k = np.median(g_v / p_v)
        scaled.append(np.abs(np.clip(k * p_v, 1e-3, max_m) - g_v) / g_v)
    r, c, g = np.concatenate(rel), np.concatenate(cls), np.concatenate(gts)
    total = r.sum()

    print(f"{a.model} on {a.data}: {len(idx)} frames, {r.size:,} valid pixels")
    print(f"AbsRel (pixel-pooled) {r.mean():.3f}; after per-image median scaling "
          f"{np.concatenate(scaled).mean():.3f}\n")
    print("| ground truth | pixels | AbsRel | share of error |\n|---|---|---|---|")
    for lo, hi in zip(ranges[:-1], ranges[1:], strict=True):
        sel = (g >= lo) & (g < hi)
        if sel.any():
            print(f"| {lo:g}-{hi:g} m | {sel.mean():.1%} | {r[sel].mean():.3f} | {r[sel].sum() / total:.1%} |")
    print("\n| class | pixels | AbsRel | share of error |\n|---|---|---|---|")
    for k in np.unique(c):
        sel = c == k
        name = classes[k] if k < len(classes) else str(k)
        print(f"| {name} | {sel.mean():.1%} | {r[sel].mean():.3f} | {r[sel].sum() / total:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
