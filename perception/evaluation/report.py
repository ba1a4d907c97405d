"""The replay report (issue 8, item 2): ``report.md``, ``metrics.json`` and figures.

Files written by :func:`write_report` into one directory (built beside it and renamed into place):

==========================  =====================================================================
``report.md``               input/output, throughput and latency, metrics, best/worst frames,
                            the figures below
``metrics.json``            everything in numbers: aggregated and per-frame metrics, per-frame
                            timings, depth error by distance (``schema_version`` 1)
``per_class_iou.png``       per-class IoU of every segmentation-like task
``depth_error.png``         depth AbsRel and RMSE against ground-truth distance
``latency.png``             per-frame latency (engine, and engine + post-processing)
``overlays.png``            input | prediction | ground truth per task, best and worst frames
                            (evenly spaced frames when the bag has no ground truth)
==========================  =====================================================================

The streaming helpers used during replay live here too: :class:`DepthErrorByDistance` and
:class:`OverlayKeeper` (keeps small thumbnails of the current best/worst frames only, so memory does
not grow with the bag), and :func:`frame_score` (what "best" means).
"""
from __future__ import annotations

import heapq
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from perception.errors import DataError

if TYPE_CHECKING:
    from perception.evaluation.replay import FrameRecord, ReplayResult

__all__ = ["HEADLINE", "frame_score", "DepthErrorByDistance", "OverlayKeeper", "write_report",
           "report_json", "latency_summary", "write_live_report"]

SCHEMA_VERSION = 1
# Metric kind (evaluate.metric_specs) -> the per-frame number that ranks frames (higher = better).
HEADLINE: dict[str, str] = {"segmentation": "miou", "drivable": "miou", "lanes": "iou",
                            "depth": "delta1", "binary_mask": "miou", "corridor": "miou"}
_THUMB_W = 256
_IGNORE_GREY = (96, 96, 96)


def frame_score(row: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Mean of each scored task's headline metric in a per-frame row (``HEADLINE``); None if no
    task of the frame has a defined one."""
    values = []
    for task, spec in specs.items():
        key = HEADLINE.get(str(spec.get("kind")))
        value = row.get(f"{task}/{key}") if key else None
        if value is not None and math.isfinite(value):
            values.append(float(value))
    return sum(values) / len(values) if values else None


class DepthErrorByDistance:
    """Depth AbsRel / RMSE pooled over pixels, binned by ground-truth distance (metres). Valid
    pixels and prediction clipping follow :class:`~perception.evaluation.metrics.DepthMetrics`."""

    def __init__(self, edges_m: Sequence[float] = (0, 5, 10, 15, 20, 30, 40, 50, 60, 80),
                 min_depth: float = 1e-3) -> None:
        self.edges = np.asarray(edges_m, dtype=np.float64)
        self.min_depth = min_depth
        n = len(self.edges) - 1
        # Whole-metre edges: the bin of g is a table lookup on floor(g) (5x faster than a search).
        self._lut = None
        if np.all(self.edges == np.round(self.edges)) and self.edges[0] >= 0:
            metres = np.arange(int(self.edges[-1]) + 1)
            self._lut = (np.searchsorted(self.edges, metres, side="right") - 1).astype(np.int64)
        self.count = np.zeros(n, np.int64)
        self.abs_rel = np.zeros(n)
        self.sq_err = np.zeros(n)

    def update(self, pred: Any, target: Any, max_depth: float | None) -> None:
        # float32 per pixel, float64 sums (bincount): the same figures within the plot's ink
        p = np.asarray(pred, dtype=np.float32).ravel()
        g = np.asarray(target, dtype=np.float32).ravel()
        valid = g > self.min_depth  # NaN compares False
        if max_depth is not None:
            valid &= g < max_depth
        g = g[valid]
        p = np.clip(p[valid], self.min_depth, max_depth)
        if self._lut is not None:
            idx = self._lut[np.minimum(g, len(self._lut) - 1).astype(np.intp)]
            idx[g >= self.edges[-1]] = len(self.count)  # past the last edge: dropped below
        else:
            idx = np.searchsorted(self.edges, g, side="right") - 1
        keep = (idx >= 0) & (idx < len(self.count))
        if not keep.all():
            idx, g, p = idx[keep], g[keep], p[keep]
        err = p - g
        n = len(self.count)
        self.count += np.bincount(idx, minlength=n)
        self.abs_rel += np.bincount(idx, np.abs(err) / g, minlength=n)
        self.sq_err += np.bincount(idx, err * err, minlength=n)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, c in enumerate(self.count):
            if c:
                out.append({"min_m": float(self.edges[i]), "max_m": float(self.edges[i + 1]),
                            "pixels": int(c), "abs_rel": float(self.abs_rel[i] / c),
                            "rmse": float(math.sqrt(self.sq_err[i] / c))})
        return out


# --------------------------------------------------------------------------------------------
# overlays


def _thumb_size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    return _THUMB_W, max(1, round(h * _THUMB_W / w))


def _color_label(kind: Any, cfg: Any, label: np.ndarray, size: tuple[int, int],
                 ids: bool) -> np.ndarray:
    """Colour image of a prediction or label, resized to ``size`` (w, h) first (cheap)."""
    interp = cv2.INTER_NEAREST if ids else cv2.INTER_LINEAR
    small = cv2.resize(label, size, interpolation=interp) if label.shape[:2] != size[::-1] else label
    if small.ndim != 2:
        return np.full((size[1], size[0], 3), 128, np.uint8)
    color = np.ascontiguousarray(kind.colorize(small, cfg), dtype=np.uint8)
    if ids:
        color[small == 255] = _IGNORE_GREY
    elif kind.output_type == "metres":
        color[~(small > 0)] = 0  # no ground truth (sky, no return)
    return color


class _Kept:
    """A frame kept for the overlay grid: references now, thumbnails when first asked for."""

    def __init__(self, keeper: OverlayKeeper, record: FrameRecord, bgr: np.ndarray,
                 raws: Mapping[str, np.ndarray], sample: Mapping[str, Any] | None) -> None:
        self.index = record.index
        self._args: tuple[Any, ...] | None = (keeper, record, bgr, dict(raws), sample)
        self._thumbs: dict[str, Any] | None = None

    def thumbs(self) -> dict[str, Any]:
        if self._thumbs is None:
            assert self._args is not None
            keeper, record, bgr, raws, sample = self._args
            self._thumbs, self._args = keeper._thumbs(record, bgr, raws, sample), None
        return self._thumbs


class OverlayKeeper:
    """Thumbnails of the ``k`` best and ``k`` worst frames by score, or - when frames have no
    score (no ground truth) - of up to ``2k`` evenly spaced frames. Frames only hold references
    while they are candidates; thumbnails (256 px wide) are built for the final ones only."""

    def __init__(self, k: int, kinds: Mapping[str, tuple[Any, Any]]) -> None:
        self.k = k
        self.kinds = dict(kinds)
        self._best: list[tuple[float, int, _Kept]] = []  # min-heap on score
        self._worst: list[tuple[float, int, _Kept]] = []  # min-heap on -score
        self._spaced: list[_Kept] = []
        self._stride = 1

    def _thumbs(self, record: FrameRecord, bgr: np.ndarray, raws: Mapping[str, np.ndarray],
                sample: Mapping[str, Any] | None) -> dict[str, Any]:
        size = _thumb_size(bgr.shape)
        image = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        tiles = []
        for name, raw in raws.items():
            kind, cfg = self.kinds[name]
            ids = kind.output_type == "ids"
            pred = _color_label(kind, cfg, raw, size, ids)
            key = kind.target_key or name
            gt = None
            if sample is not None and key in sample:
                gt = _color_label(kind, cfg, np.asarray(sample[key]), size, ids)
            if ids:  # class maps over the frame; depth stays a colour map
                pred = cv2.addWeighted(image, 0.45, pred, 0.55, 0.0)
                if gt is not None:
                    gt = cv2.addWeighted(image, 0.45, gt, 0.55, 0.0)
            tiles.append((name, pred, gt))
        return {"index": record.index, "stamp_ns": record.stamp_ns, "score": record.score,
                "metrics": dict(record.metrics), "image": image, "tiles": tiles}

    def offer(self, record: FrameRecord, bgr: np.ndarray, raws: Mapping[str, np.ndarray],
              sample: Mapping[str, Any] | None) -> None:
        if self.k <= 0:
            return
        score = record.score
        if score is None:
            if self._best or self._worst:
                return  # scored frames exist: unscored ones (missing labels) are not ranked
            if record.index % self._stride == 0:
                self._spaced.append(_Kept(self, record, bgr, raws, sample))
                if len(self._spaced) > 2 * self.k:  # keep every other one, double the stride
                    self._spaced = self._spaced[::2]
                    self._stride *= 2
            return
        self._spaced = []
        kept = None
        for heap, key in ((self._best, score), (self._worst, -score)):
            if len(heap) < self.k or key > heap[0][0]:
                kept = kept or _Kept(self, record, bgr, raws, sample)
                item = (key, -record.index, kept)  # ties: the earlier frame wins
                if len(heap) < self.k:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)

    def best(self) -> list[dict]:
        return [t.thumbs() for _, _, t in sorted(self._best, key=lambda x: (-x[0], -x[1]))]

    def worst(self) -> list[dict]:
        """Worst first; frames already among the best (short bags) are left out."""
        best = {t.index for _, _, t in self._best}
        return [t.thumbs() for _, _, t in sorted(self._worst, key=lambda x: (-x[0], -x[1]))
                if t.index not in best]

    def spaced(self) -> list[dict]:
        return [t.thumbs() for t in self._spaced]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def overlay_grid(rows: Sequence[tuple[str, dict]]) -> np.ndarray | None:
    """One row per frame: input, then prediction and ground truth of each task."""
    if not rows:
        return None
    lines = []
    for title, t in rows:
        h, w = t["image"].shape[:2]
        blank = np.full((h, w, 3), 200, np.uint8)
        cv2.putText(blank, "no label", (8, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (80, 80, 80),
                    1, cv2.LINE_AA)
        cells = [_label(t["image"], title)]
        for name, pred, gt in t["tiles"]:
            cells.append(_label(pred, f"{name}: prediction"))
            cells.append(_label(gt if gt is not None else blank, f"{name}: ground truth"))
        lines.append(np.hstack([np.pad(c, ((0, 2), (0, 2), (0, 0)), constant_values=255)
                                for c in cells]))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
             for line in lines]
    return np.vstack(lines)


# --------------------------------------------------------------------------------------------
# numbers


def latency_summary(frames: Sequence[FrameRecord]) -> dict[str, float | None]:
    if not frames:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None,
                "engine_mean_ms": None}
    lat = np.array([f.latency_ms for f in frames])
    eng = np.array([f.engine_ms for f in frames])
    return {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "max_ms": float(lat.max()), "mean_ms": float(lat.mean()),
            "engine_mean_ms": float(eng.mean())}


def _thumb_info(t: dict) -> dict[str, Any]:
    return {"index": t["index"], "stamp_ns": t["stamp_ns"], "score": t["score"],
            "metrics": t["metrics"]}


def report_json(result: ReplayResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.json``: every number of the report."""
    keeper = result.overlays
    lat = latency_summary(result.frames)
    return {
        "schema_version": SCHEMA_VERSION,
        **dict(extra or {}),
        "input": {"bag": str(result.input), "camera_topic": result.camera_topic,
                  "camera_type": result.camera_msgtype},
        "output": {"bag": str(result.output), "topics": result.topics},
        "backend": result.backend,
        "tasks": result.tasks,
        "ground_truth": result.gt_source or None,
        "throughput": {"frames": len(result.frames), "seconds": result.seconds,
                       "replay_fps": result.fps,
                       "engine_fps": 1e3 / lat["engine_mean_ms"] if lat["engine_mean_ms"] else None,
                       "latency": lat},
        "metrics": result.metrics,
        "unlabelled": result.unlabelled,
        "depth_by_distance": result.depth_by_distance,
        "best_frames": [_thumb_info(t) for t in keeper.best()] if keeper else [],
        "worst_frames": [_thumb_info(t) for t in keeper.worst()] if keeper else [],
        "frames": [{"index": f.index, "stamp_ns": f.stamp_ns, "engine_ms": round(f.engine_ms, 3),
                    "post_ms": round(f.post_ms, 3), "score": f.score, "metrics": f.metrics}
                   for f in result.frames],
    }


# --------------------------------------------------------------------------------------------
# figures


def _plot_per_class_iou(metrics: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    tasks: dict[str, list[tuple[str, float]]] = {}
    for key, value in metrics.items():
        task, _, name = key.partition("/")
        if name.startswith("iou/"):
            tasks.setdefault(task, []).append((name[4:], math.nan if value is None else value))
    if not tasks:
        return False
    heights = [max(1.2, 0.28 * len(v) + 0.6) for v in tasks.values()]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(7, sum(heights) + 0.4),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (task, items) in zip(axes[:, 0], tasks.items(), strict=True):
        names = [n for n, _ in items]
        values = [0.0 if math.isnan(v) else v for _, v in items]
        bars = ax.barh(range(len(items)), values, color="#4c72b0")
        for bar, (_, v) in zip(bars, items, strict=True):
            ax.text(min(bar.get_width() + 0.01, 0.93), bar.get_y() + bar.get_height() / 2,
                    "n/a" if math.isnan(v) else f"{v:.2f}", va="center", fontsize=7)
        ax.set_yticks(range(len(items)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        miou = metrics.get(f"{task}/miou")
        ax.set_title(f"{task}: per-class IoU" + (f" (mIoU {miou:.3f})" if miou is not None else ""),
                     fontsize=9)
    axes[-1, 0].set_xlabel("IoU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_depth(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not rows:
        return False
    mids = [(r["min_m"] + r["max_m"]) / 2 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(mids, [r["abs_rel"] for r in rows], "o-", color="#c44e52", label="AbsRel")
    ax.set_xlabel("ground-truth distance (m)")
    ax.set_ylabel("AbsRel", color="#c44e52")
    ax2 = ax.twinx()
    ax2.plot(mids, [r["rmse"] for r in rows], "s--", color="#4c72b0", label="RMSE")
    ax2.set_ylabel("RMSE (m)", color="#4c72b0")
    ax.set_title("depth error against distance (pixels pooled per bin)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_latency(frames: Sequence[FrameRecord], fps: float, path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not frames:
        return False
    idx = [f.index for f in frames]
    lat = np.array([f.latency_ms for f in frames])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(idx, [f.engine_ms for f in frames], lw=1, color="#8172b2", label="engine")
    ax.plot(idx, lat, lw=1, color="#55a868", label="engine + post-processing")
    for q, style in ((50, ":"), (95, "--")):
        ax.axhline(np.percentile(lat, q), color="grey", ls=style, lw=1,
                   label=f"p{q} {np.percentile(lat, q):.1f} ms")
    ax.set_xlabel("frame")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title(f"per-frame latency ({len(frames)} frames, replay {fps:.1f} frames/s)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# report.md


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(result: ReplayResult, data: Mapping[str, Any], figures: Mapping[str, str],
              title: str) -> str:
    from perception.evaluation.evaluate import metrics_markdown

    thr = data["throughput"]
    lat = thr["latency"]
    lines = [f"# {title}", "",
             f"- input: `{result.input}`, camera `{result.camera_topic}` ({result.camera_msgtype})",
             f"- output: `{result.output}` ({len(result.topics)} topics: "
             + ", ".join(f"`{t}`" for t in result.topics) + ")",
             f"- backend: {result.backend}; tasks: {', '.join(result.tasks)}",
             f"- ground truth: {result.gt_source or 'none (no metrics)'}", "",
             "## Throughput and latency", "",
             "| frames | loop time | replay | engine alone* | latency p50 | p95 | max |",
             "|---|---|---|---|---|---|---|",
             f"| {thr['frames']} | {thr['seconds']:.2f} s | {thr['replay_fps']:.2f} frames/s | "
             + (f"{thr['engine_fps']:.2f} frames/s" if thr["engine_fps"] else "n/a")
             + f" | {_fmt(lat['p50_ms'], 1)} ms | {_fmt(lat['p95_ms'], 1)} ms | {_fmt(lat['max_ms'], 1)} ms |",
             "", "*1000 / mean engine time per frame. Latency = engine + post-processing to the "
             "frame's resolution (what `engine.infer` does); reading, scoring and writing run in "
             "other threads.", ""]
    if result.metrics:
        md = metrics_markdown(result.metrics, "Metrics")
        lines += [line.replace("# ", "## ", 1) if line.startswith("#") else line
                  for line in md.splitlines()]
        lines.append("")
        if result.unlabelled:
            lines += [f"Not scored (no ground truth): {', '.join(result.unlabelled)}", ""]
    for which in ("best_frames", "worst_frames"):
        if data[which]:
            lines += [f"## {which.replace('_', ' ').capitalize()}", "",
                      "| frame | stamp (ns) | score |", "|---|---|---|"]
            lines += [f"| {f['index']} | {f['stamp_ns']} | {_fmt(f['score'])} |" for f in data[which]]
            lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name, caption in figures.items():
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


@contextmanager
def _staged_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """A hidden sibling of ``out`` to write the report into, renamed into place when the block
    succeeds and removed otherwise, so an interrupted report leaves nothing.

    Raises:
        DataError: ``out`` exists and not ``overwrite``.
    """
    if out.exists() and not overwrite:
        raise DataError(f"report directory {out} exists already; remove it or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(result: ReplayResult, out_dir: str | os.PathLike[str], *,
                 title: str | None = None, extra: Mapping[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Write the report directory (see the module docstring); built in a hidden sibling and
    renamed into place, so an interrupted report leaves nothing.

    Raises:
        DataError: ``out_dir`` exists and not ``overwrite``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from perception.training.run_dir import write_json

    out = Path(out_dir)
    with _staged_dir(out, overwrite) as tmp:
        data = report_json(result, extra)
        write_json(tmp / "metrics.json", data)
        figures: dict[str, str] = {}
        if _plot_per_class_iou(result.metrics, tmp / "per_class_iou.png"):
            figures["per_class_iou.png"] = "per-class IoU"
        if _plot_depth(result.depth_by_distance, tmp / "depth_error.png"):
            figures["depth_error.png"] = "depth error against ground-truth distance"
        if _plot_latency(result.frames, result.fps, tmp / "latency.png"):
            figures["latency.png"] = "per-frame latency"
        keeper = result.overlays
        if keeper is not None:
            rows = [(f"best #{i + 1}: frame {t['index']}, score {_fmt(t['score'])}", t)
                    for i, t in enumerate(keeper.best())]
            rows += [(f"worst #{i + 1}: frame {t['index']}, score {_fmt(t['score'])}", t)
                     for i, t in enumerate(keeper.worst())]
            caption = "input | prediction | ground truth, best and worst frames"
            if not rows:
                rows = [(f"frame {t['index']}", t) for t in keeper.spaced()]
                caption = "input | prediction, evenly spaced frames (no ground truth)"
            grid = overlay_grid(rows)
            if grid is not None:
                cv2.imwrite(str(tmp / "overlays.png"), grid)
                figures["overlays.png"] = caption
        text = _markdown(result, data, figures, title or f"Replay of {result.input.name}")
        (tmp / "report.md").write_text(text, encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------
# live replay (tadp replay --realtime)


def write_live_report(summary: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                      overwrite: bool = False) -> Path:
    """``report.md``, ``metrics.json`` and ``latency.png`` of a live replay. ``summary`` holds
    ``input``, ``output``, ``node_ns``, ``sent``, ``answered``, ``dropped`` (stamps),
    ``incomplete`` (stamps), ``latency_ms`` (per answered frame), ``rate``, ``parity``
    (:func:`~perception.evaluation.replay.live_parity`) and ``backend``.

    Raises:
        DataError: ``out_dir`` exists and not ``overwrite``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from perception.training.run_dir import write_json

    out = Path(out_dir)
    with _staged_dir(out, overwrite) as tmp:
        lat = list(summary["latency_ms"])
        stats = {"p50_ms": float(np.percentile(lat, 50)) if lat else None,
                 "p95_ms": float(np.percentile(lat, 95)) if lat else None,
                 "max_ms": max(lat) if lat else None}
        data = {"schema_version": SCHEMA_VERSION, "mode": "realtime", **dict(summary),
                "latency": stats}
        write_json(tmp / "metrics.json", data)
        if lat:
            fig, ax = plt.subplots(figsize=(7, 3.2))
            ax.plot(range(len(lat)), lat, lw=1, color="#55a868", label="publish -> last output")
            ax.set_xlabel("answered frame")
            ax.set_ylabel("ms")
            ax.set_ylim(bottom=0)
            ax.set_title(f"live latency ({len(lat)} of {summary['sent']} frames answered)",
                         fontsize=9)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(tmp / "latency.png", dpi=110)
            plt.close(fig)
        lines = [f"# Live replay of {Path(str(summary['input'])).name}", "",
                 f"- node: `{summary['node_ns']}`, played at {summary['rate']:g}x the recorded rate",
                 f"- recorded outputs: `{summary['output']}`",
                 f"- offline reference: {summary['backend']}", "",
                 "| sent | answered | dropped | incomplete | latency p50 | p95 | max |",
                 "|---|---|---|---|---|---|---|",
                 f"| {summary['sent']} | {summary['answered']} | {len(summary['dropped'])} | "
                 f"{len(summary['incomplete'])} | {_fmt(stats['p50_ms'], 1)} ms | "
                 f"{_fmt(stats['p95_ms'], 1)} ms | {_fmt(stats['max_ms'], 1)} ms |", "",
                 "Latency: frame published -> its last output received (same host, wall clock). "
                 "Dropped: no output at all (the node keeps only the newest frame when busy).", "",
                 "## Parity with the offline replay of the same frames", "",
                 "| topic | frames | worst difference | within tolerance |", "|---|---|---|---|"]
        for topic, row in summary["parity"].items():
            worst = (f"{row['max_mismatch']:.2e} of pixels" if "max_mismatch" in row
                     else f"{row.get('max_abs', 0.0):.2e} m" if "max_abs" in row
                     else f"shape {row.get('shape_mismatch')}")
            lines.append(f"| `{topic}` | {row['frames']} | {worst} | {'yes' if row['ok'] else 'NO'} |")
        if lat:
            lines += ["", "![live latency](latency.png)"]
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
