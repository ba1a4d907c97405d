"""Where a model's depth error comes from (issue 5's AbsRel target): AbsRel by semantic class and
by ground-truth range, each row's share of the total error, and the AbsRel left after scaling
every image by its median ratio gt/pred (what a perfect per-image scale would leave: the
structural part of the error), the error near depth edges (pixels within 2 px of a jump in ground
truth: what a sharper output could win), and how the per-image scale error follows the camera's
mounting height (what the network cannot see in the image).

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

import cv2
import numpy as np
import torch

from perception.data.augment import Resize
from perception.data.sample import sample_focal_px, sample_height_m
from perception.evaluation.evaluate import normalize_images, open_dataset
from perception.runtime.default_model import DEFAULT_MODEL
from perception.training.run_dir import load_model_from

RANGES_M = (0.0, 5.0, 10.0, 20.0, 40.0)  # then up to the task's max_depth_m
# A depth edge: |grad ln(depth)| (central differences) above this, i.e. a step of more than
# 0.3 in ln depth between a pixel's two neighbours (a 35 % jump); the road within ~7 rows of
# the horizon passes it too.
EDGE_LOG_STEP = 0.15
EDGE_RADIUS_PX = 2


def depth_edges(gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels within ``EDGE_RADIUS_PX`` of a jump in ground-truth depth (invalid pixels, e.g.
    sky, count as far away so object outlines against them are edges too)."""
    log_d = np.log(np.where(valid, gt, gt[valid].max() if valid.any() else 1.0))
    gy, gx = np.gradient(log_d)
    jump = (np.hypot(gx, gy) > EDGE_LOG_STEP).astype(np.uint8)
    k = 2 * EDGE_RADIUS_PX + 1
    return cv2.dilate(jump, np.ones((k, k), np.uint8)) > 0


def _depth_task(model: torch.nn.Module) -> str:
    names = [n for n, t in model.tasks.items() if t.cfg.kind == "depth"]
    if not names:
        raise SystemExit("the model has no depth task")
    return names[0]


def _predict(model: torch.nn.Module, task: str, image: np.ndarray,
             focal_px: float | None = None, height_m: float | None = None) -> np.ndarray:
    x = normalize_images(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
    with torch.no_grad():
        raw = model(x)[task]
    slot = model.tasks[task]
    return slot.kind.postprocess(raw, slot.cfg, focal_px=focal_px, height_m=height_m)[0].numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model file, run or checkpoint directory")
    p.add_argument("--data", required=True, help="synthetic dataset directory (with segmentation)")
    p.add_argument("--frames", type=int, default=50, help="frames used, spread evenly (default 50)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-intrinsics", action="store_true",
                   help="ignore the frames' intrinsics (as tadp eval --no-intrinsics)")
    p.add_argument("--no-mounting", action="store_true",
                   help="ignore the frames' mounting height (as tadp eval --no-mounting)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model_from(a.model).eval()
    task = _depth_task(model)
    max_m = model.tasks[task].cfg.max_depth_m
    ranges = [r for r in RANGES_M if r < max_m] + [max_m]
    data = open_dataset(a.data, transform=Resize(tuple(model.cfg.input_size)))
    classes = [c["name"] for c in json.loads((Path(a.data) / "dataset.json").read_text())["classes"]]
    idx = np.linspace(0, len(data) - 1, min(a.frames, len(data))).round().astype(int)

    rel, cls, gts, scaled, edge, log_k, height = [], [], [], [], [], [], []
    for i in idx:
        s = data[int(i)]
        if "segmentation" not in s or "depth" not in s:
            raise SystemExit(f"frame {i} of {a.data} lacks segmentation or depth labels")
        focal = None if a.no_intrinsics else sample_focal_px(s, s["image"].shape[0])
        known = sample_height_m(s)
        pred = _predict(model, task, s["image"], focal, None if a.no_mounting else known)
        gt = s["depth"]
        v = np.isfinite(gt) & (gt > 0) & (gt < max_m)
        p_v, g_v = np.clip(pred[v], 1e-3, max_m), gt[v]
        rel.append(np.abs(p_v - g_v) / g_v)
        cls.append(s["segmentation"][v])
        gts.append(g_v)
        edge.append(depth_edges(gt, v)[v])
        k = np.median(g_v / p_v)
        scaled.append(np.abs(np.clip(k * p_v, 1e-3, max_m) - g_v) / g_v)
        log_k.append(np.log(k))
        height.append(np.nan if known is None else known)
    r, c, g, e = (np.concatenate(x) for x in (rel, cls, gts, edge))
    total = r.sum()

    print(f"{a.model} on {a.data}: {len(idx)} frames, {r.size:,} valid pixels")
    print(f"AbsRel (pixel-pooled) {r.mean():.3f}; after per-image median scaling "
          f"{np.concatenate(scaled).mean():.3f}\n")
    print("| ground truth | pixels | AbsRel | share of error |\n|---|---|---|---|")
    for lo, hi in zip(ranges[:-1], ranges[1:], strict=True):
        sel = (g >= lo) & (g < hi)
        if sel.any():
            print(f"| {lo:g}-{hi:g} m | {sel.mean():.1%} | {r[sel].mean():.3f} | {r[sel].sum() / total:.1%} |")
    print(f"\nnear depth edges (within {EDGE_RADIUS_PX} px of a jump > {EDGE_LOG_STEP} in ln depth): "
          f"{e.mean():.1%} of the pixels, AbsRel {r[e].mean():.3f}, {r[e].sum() / total:.1%} of the "
          f"error; exact there, AbsRel would be {r[~e].sum() / r.size:.3f}")
    h = np.array(height)
    if np.isfinite(h).sum() > 2:
        ok = np.isfinite(h)
        print(f"per-image scale error ln(median gt/pred) vs camera height: r = "
              f"{np.corrcoef(h[ok], np.array(log_k)[ok])[0, 1]:.2f} over {ok.sum()} frames "
              f"(std of the scale error {np.std(log_k):.3f})")
    print("\n| class | pixels | AbsRel | share of error |\n|---|---|---|---|")
    for k in np.unique(c):
        sel = c == k
        name = classes[k] if k < len(classes) else str(k)
        print(f"| {name} | {sel.mean():.1%} | {r[sel].mean():.3f} | {r[sel].sum() / total:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
