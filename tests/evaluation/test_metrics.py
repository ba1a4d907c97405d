"""Metrics against hand-computed cases (issue 5, item 1). Every expected number is worked out in
the comments next to it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from perception.errors import ConfigError, InputError, RegistryError
from perception.evaluation.metrics import (
    METRICS,
    ConfusionMatrix,
    DepthMetrics,
    DrivableMetrics,
    LaneMetrics,
    MetricSet,
    SegmentationMetrics,
    delta_m,
    lower_is_better,
)

# 3 classes, 255 = ignore. Pixel pairs (target, pred):
#   (0,0) (0,1) (1,1)
#   (1,1) (2,1) (255,2) <- ignored
# Confusion (rows target, cols pred):  [[1, 1, 0],
#                                       [0, 2, 0],
#                                       [0, 1, 0]]
# IoU0 = 1 / (2 + 1 - 1) = 0.5; IoU1 = 2 / (2 + 4 - 2) = 0.5; IoU2 = 0 / (1 + 0 - 0) = 0
# mIoU = 1/3; pixel acc = 3/5; class recall = [1/2, 1, 0] -> mean acc 0.5
TARGET = np.array([[0, 0, 1], [1, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 1, 2]], dtype=np.uint8)


def test_confusion_matrix_hand_computed() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    np.testing.assert_allclose(cm.per_class_iou(), [0.5, 0.5, 0.0])
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    np.testing.assert_allclose(cm.class_accuracy(), [0.5, 1.0, 0.0])


def test_segmentation_metrics_keys_and_values() -> None:
    seg = SegmentationMetrics(["a", "b", "c"])
    frame = seg.update(PRED, TARGET)
    assert frame == pytest.approx({
        "miou": 1 / 3, "pixel_acc": 0.6, "mean_acc": 0.5,
        "iou/a": 0.5, "iou/b": 0.5, "iou/c": 0.0,
    })
    assert seg.compute() == frame


def test_empty_class_is_nan_and_excluded_from_mean() -> None:
    # Same pixels with a 4th class that appears in neither map: its IoU is 0/0 -> NaN, and the
    # mean over the 3 defined IoUs is still 1/3 (a class absent everywhere must not count as 0).
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    iou = cm.per_class_iou()
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(1 / 3)
    out = SegmentationMetrics(["a", "b", "c", "d"]).update(PRED, TARGET)
    assert out["iou/d"] is None and out["miou"] == pytest.approx(1 / 3)
    # A class that is only predicted (false positives, no ground truth) is defined: IoU 0.
    cm2 = ConfusionMatrix(2)
    cm2.update(np.array([1, 1]), np.array([0, 0]))  # [[0, 2], [0, 0]]: IoU0 = 0/2, IoU1 = 0/2
    np.testing.assert_array_equal(cm2.per_class_iou(), [0.0, 0.0])


def test_all_ignored_gives_none_not_nan_in_dicts() -> None:
    seg = SegmentationMetrics(["a", "b"])
    out = seg.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8))
    assert out == {"miou": None, "pixel_acc": None, "mean_acc": None, "iou/a": None, "iou/b": None}
    json.dumps(out, allow_nan=False)


def test_ignore_index_skips_any_prediction() -> None:
    # Predictions under ignored targets are never counted, whatever they are (even out of range).
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1, 200]), np.array([0, 1, 255]))
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [0, 1]])


def test_custom_and_disabled_ignore_index() -> None:
    cm = ConfusionMatrix(2, ignore_index=None)
    with pytest.raises(InputError, match=r"target contains class ids \[255\] outside 0..1"):
        cm.update(np.array([0, 0]), np.array([0, 255]))
    cm = ConfusionMatrix(3, ignore_index=-1)
    cm.update(np.array([0, 2]), np.array([-1, 2]))
    np.testing.assert_array_equal(cm.matrix, [[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    with pytest.raises(ConfigError, match="collides"):
        ConfusionMatrix(3, ignore_index=2)


def test_out_of_range_and_shape_errors() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(InputError, match=r"target contains class ids \[7\]"):
        cm.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(InputError, match=r"prediction contains class ids \[3\]"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(InputError, match=r"prediction shape \(2, 3\) != target shape \(3, 2\)"):
        cm.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    assert cm.matrix.sum() == 0  # failed updates leave no trace


def test_torch_inputs_match_numpy() -> None:
    ref = ConfusionMatrix(3)
    ref.update(PRED, TARGET)
    both = ConfusionMatrix(3)
    both.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))  # torch.bincount path
    mixed = ConfusionMatrix(3)
    mixed.update(torch.from_numpy(PRED).long(), TARGET)
    np.testing.assert_array_equal(both.matrix, ref.matrix)
    np.testing.assert_array_equal(mixed.matrix, ref.matrix)
    with pytest.raises(InputError, match=r"target contains class ids \[9\]"):
        both.update(torch.tensor([0]), torch.tensor([9]))


def test_streaming_equals_one_shot() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, size=(6, 16, 20)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    pred = np.where(rng.random(target.shape) < 0.7, target % 5, rng.integers(0, 5, target.shape))
    one = SegmentationMetrics(list("abcde"))
    one.update(pred, target)
    stream = SegmentationMetrics(list("abcde"))
    for i in range(6):
        stream.update(pred[i], target[i])
    assert stream.compute() == one.compute()

    pred_d = rng.uniform(0.5, 90, size=(6, 8, 8))
    gt_d = rng.uniform(0, 90, size=(6, 8, 8)) * (rng.random((6, 8, 8)) > 0.2)
    for reduction in ("image", "pixel"):
        one_d = DepthMetrics(reduction=reduction)
        one_d.update(pred_d, gt_d)
        stream_d = DepthMetrics(reduction=reduction)
        for i in range(6):
            stream_d.update(torch.from_numpy(pred_d[i]), gt_d[i])  # torch input too
        assert stream_d.compute() == pytest.approx(one_d.compute(), rel=1e-12)


def test_reset() -> None:
    seg = SegmentationMetrics(["a", "b", "c"])
    seg.update(PRED, TARGET)
    seg.reset()
    assert seg.compute()["miou"] is None


def test_drivable_three_class_and_binary() -> None:
    # 0 background, 1 direct, 2 alternative. Pairs (t, p): (0,0) (1,1) (2,1) (2,2) (0,2) (1,0)
    # 3-class confusion: [[1, 0, 1], [1, 1, 0], [0, 1, 1]]
    #   IoU_bg = 1 / (2 + 2 - 1) = 1/3; IoU_direct = 1 / (2 + 2 - 1) = 1/3;
    #   IoU_alt = 1 / (2 + 2 - 1) = 1/3 -> mIoU 1/3; pixel acc 3/6
    # binary (direct + alternative = drivable): [[1, 1], [1, 3]]
    #   IoU_bg = 1 / (2 + 2 - 1) = 1/3; IoU_drivable = 3 / (4 + 4 - 3) = 3/5 -> mIoU_binary 7/15
    target = np.array([0, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 2, 2, 0])
    out = DrivableMetrics().update(pred, target)
    assert out["miou"] == pytest.approx(1 / 3)
    assert out["pixel_acc"] == pytest.approx(0.5)
    assert out["iou/alternative"] == pytest.approx(1 / 3)
    assert out["iou_drivable"] == pytest.approx(3 / 5)
    assert out["miou_binary"] == pytest.approx(7 / 15)


# Lanes. Pairs (t, p), 255 ignored:
#   (0,0) (1,1) (1,0) (0,1)
#   (0,0) (1,1) (0,1) (255,1)
# Confusion [[2, 2], [1, 2]]: lane IoU = 2 / (2 + 2 + 1) = 0.4
# YOLOP Acc (lineAccuracy) = TP / (TP + FN) = 2 / 3; overall pixel acc = 4 / 7
# background IoU = 2 / (4 + 3 - 2) = 0.4 -> mIoU 0.4
LANE_T = np.array([[0, 1, 1, 0], [0, 1, 0, 255]], dtype=np.uint8)
LANE_P = np.array([[0, 1, 0, 1], [0, 1, 1, 1]], dtype=np.uint8)


def test_lane_metrics_yolop_definitions() -> None:
    lanes = LaneMetrics()
    out = lanes.update(LANE_P, LANE_T)
    assert out == pytest.approx({
        "iou": 0.4, "acc": 2 / 3, "miou": 0.4, "pixel_acc": 4 / 7,
        "iou_yolop": 0.4, "acc_yolop": 2 / 3,
    })


def test_lane_yolop_batch_mean_differs_from_dataset_value() -> None:
    # Batch 1: the frame above (B=1): IoU 0.4, Acc 2/3.
    # Batch 2: two frames without lanes in prediction or ground truth (B=2). YOLOP turns the
    #   undefined IoU (0/0) into 0 and its Acc is 0 / (0 + 1e-12) = 0.
    # YOLOP's AverageMeter: IoU = (1 * 0.4 + 2 * 0) / 3 = 0.1333..., Acc = (2/3) / 3 = 0.2222...
    # Dataset confusion only gains true negatives: IoU stays 0.4, Acc stays 2/3.
    lanes = LaneMetrics()
    lanes.update(LANE_P[None], LANE_T[None])
    frame2 = lanes.update(np.zeros((2, 2, 4), np.uint8), np.zeros((2, 2, 4), np.uint8))
    assert frame2["iou"] is None and frame2["iou_yolop"] == 0.0
    out = lanes.compute()
    assert out["iou"] == pytest.approx(0.4) and out["acc"] == pytest.approx(2 / 3)
    assert out["iou_yolop"] == pytest.approx(0.4 / 3)
    assert out["acc_yolop"] == pytest.approx(2 / 9)


# Depth. gt [[2, 4], [0, 100]] with caps (1e-3, 80): 0 (invalid) and 100 (> max) drop out.
# pred [[1, 5], [3, 3]] -> valid pairs (p, g) = (1, 2), (5, 4)
#   AbsRel = (1/2 + 1/4) / 2 = 0.375      SqRel = (1/2 + 1/4) / 2 = 0.375
#   RMSE = sqrt((1 + 1) / 2) = 1
#   RMSE-log = sqrt((ln 2)^2 + (ln 1.25)^2) / 2) = sqrt((0.480453 + 0.049793) / 2) = 0.514901
#   ratios max(p/g, g/p) = 2, 1.25 -> delta1 (< 1.25, strict) = 0; delta2 (< 1.5625) = 0.5;
#   delta3 (< 1.953125) = 0.5
def test_depth_hand_computed() -> None:
    out = DepthMetrics().update(np.array([[1.0, 5.0], [3.0, 3.0]], np.float32),
                                np.array([[2.0, 4.0], [0.0, 100.0]], np.float32))
    expected_log = math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 2)
    assert out == pytest.approx({
        "abs_rel": 0.375, "sq_rel": 0.375, "rmse": 1.0, "rmse_log": expected_log,
        "delta1": 0.0, "delta2": 0.5, "delta3": 0.5, "valid_px": 2,
    })
    assert expected_log == pytest.approx(0.514901, abs=1e-6)


def test_depth_prediction_clipped_to_caps() -> None:
    # pred 120 is clipped to max_depth 80: AbsRel = |80 - 50| / 50 = 0.6.
    # pred 0 is clipped to min_depth 0.5: AbsRel = |0.5 - 1| / 1 = 0.5.
    m = DepthMetrics(min_depth=0.5, max_depth=80.0)
    assert m.update(np.array([[120.0]]), np.array([[50.0]]))["abs_rel"] == pytest.approx(0.6)
    assert m.update(np.array([[0.0]]), np.array([[1.0]]))["abs_rel"] == pytest.approx(0.5)
    # Without an upper cap the far pixel counts and is not clipped: |120 - 100| / 100 = 0.2.
    free = DepthMetrics(max_depth=None)
    assert free.update(np.array([[120.0]]), np.array([[100.0]]))["abs_rel"] == pytest.approx(0.2)


def test_depth_image_vs_pixel_reduction() -> None:
    # Image A: 2 valid px, g = 1, p = 2 -> AbsRel 1, RMSE 1. Image B: 4 valid px, p = g = 1 -> 0, 0.
    # "image": mean over images -> AbsRel 0.5, RMSE 0.5.
    # "pixel": pooled -> AbsRel (2*1 + 4*0) / 6 = 1/3, RMSE sqrt(2 / 6) = 0.57735.
    # Image C has no valid pixel: skipped by both, its frame metrics are None.
    a_p, a_g = np.full((1, 2), 2.0), np.ones((1, 2))
    b_p, b_g = np.ones((1, 4)), np.ones((1, 4))
    for reduction, abs_rel, rmse in (("image", 0.5, 0.5), ("pixel", 1 / 3, math.sqrt(1 / 3))):
        m = DepthMetrics(reduction=reduction)
        m.update(a_p, a_g)
        m.update(b_p, b_g)
        empty = m.update(np.ones((2, 2)), np.zeros((2, 2)))
        assert empty["abs_rel"] is None and empty["valid_px"] == 0
        out = m.compute()
        assert out["abs_rel"] == pytest.approx(abs_rel)
        assert out["rmse"] == pytest.approx(rmse)
        assert out["valid_px"] == 6


def test_depth_shapes_and_config() -> None:
    m = DepthMetrics()
    batch = m.update(np.full((2, 1, 3, 3), 2.0), np.full((2, 1, 3, 3), 2.0))  # [B, 1, H, W]
    assert batch["abs_rel"] == 0.0 and batch["valid_px"] == 18
    with pytest.raises(InputError, match="depth maps must be"):
        m.update(np.ones((1, 2, 3, 3)), np.ones((1, 2, 3, 3)))
    with pytest.raises(InputError, match="prediction shape"):
        m.update(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ConfigError, match="min_depth must be > 0"):
        DepthMetrics(min_depth=0)
    with pytest.raises(ConfigError, match="reduction must be"):
        DepthMetrics(reduction="mean")


def test_delta_m_signs() -> None:
    # Higher is better: mIoU 0.5 vs baseline 0.4 -> +(0.5 - 0.4) / 0.4 = +25 %.
    # Lower is better: RMSE 2.0 vs 2.5 -> -(2.0 - 2.5) / 2.5 = +20 %. Mean: +22.5 %.
    base = {"segmentation/miou": 0.4, "depth/rmse": 2.5}
    assert delta_m({"segmentation/miou": 0.5, "depth/rmse": 2.0}, base) == pytest.approx(22.5)
    # Worse on both: mIoU 0.3 -> -25 %; RMSE 3.0 -> -20 %. Mean -22.5 %.
    assert delta_m({"segmentation/miou": 0.3, "depth/rmse": 3.0}, base) == pytest.approx(-22.5)
    # Equal to the baselines -> 0. An explicit direction overrides the name.
    assert delta_m(base, base) == 0.0
    assert delta_m({"x/score": 2.0}, {"x/score": 1.0}, {"x/score": True}) == pytest.approx(-100.0)
    assert lower_is_better("depth/abs_rel") and not lower_is_better("segmentation/iou/road")


def test_delta_m_reproduces_tadformer_table_1() -> None:
    # TADFormer (CVPR 2025) Table 1, PASCAL-Context, Swin-T: single-task baseline row and the
    # three TADFormer rows with their published Δm (%). Values are rounded to 2 decimals in the
    # paper, so allow 0.015. E.g. r=16: (+3.839 - 4.295 + 4.314 + 5.899) / 4 = +2.44.
    baseline = {"semseg/miou": 67.21, "parts/miou": 61.93, "sal/miou": 62.35, "normals/rmse": 17.97}
    rows = {
        2.44: (69.79, 59.27, 65.04, 16.91),
        3.63: (70.20, 60.00, 65.71, 16.57),
        4.24: (70.82, 60.45, 65.88, 16.48),
    }
    for published, values in rows.items():
        got = delta_m(dict(zip(baseline, values, strict=True)), baseline)
        assert got == pytest.approx(published, abs=0.015)


def test_delta_m_errors() -> None:
    with pytest.raises(ConfigError, match=r"no baseline for \['depth/rmse'\]"):
        delta_m({"depth/rmse": 1.0}, {"segmentation/miou": 0.5})
    with pytest.raises(ConfigError, match="non-zero baseline"):
        delta_m({"depth/rmse": 1.0}, {"depth/rmse": 0.0})
    with pytest.raises(ConfigError, match="unknown direction for metric 'x/score'"):
        delta_m({"x/score": 1.0}, {"x/score": 2.0})


def _sample(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A small (pred, target) pair per registered metric kind."""
    if kind == "depth":
        return np.full((4, 4), 2.0, np.float32), np.full((4, 4), 2.5, np.float32)
    n = {"segmentation": 9, "drivable": 3}.get(kind, 2)
    target = (np.arange(16).reshape(4, 4) % n).astype(np.uint8)
    return np.roll(target, 1, axis=1), target


@pytest.mark.parametrize("kind", METRICS.names())
def test_every_registered_kind_is_flat_and_json_able(kind: str) -> None:
    ms = MetricSet({"t": kind})
    pred, target = _sample(kind)
    frame = ms.update({"t": pred}, {"t": target})
    summary = ms.compute()
    assert frame.keys() == summary.keys() and all(k.startswith("t/") for k in frame)
    assert frame == summary  # one frame: the per-frame row equals the summary
    json.dumps(summary, allow_nan=False)


def test_metric_set_routes_tasks_and_skips_missing() -> None:
    ms = MetricSet({
        "segmentation": {"kind": "segmentation", "names": ["a", "b", "c"]},
        "depth": {"kind": "depth", "max_depth": 50.0},
        "lanes": "lanes",
    })
    assert ms.tasks == ["segmentation", "depth", "lanes"]
    frame = ms.update({"segmentation": PRED, "lanes": LANE_P, "depth": np.ones((2, 2))},
                      {"segmentation": TARGET, "lanes": LANE_T})  # no depth ground truth
    assert frame["segmentation/miou"] == pytest.approx(1 / 3)
    assert frame["lanes/iou"] == pytest.approx(0.4)
    assert not any(k.startswith("depth/") for k in frame)
    summary = ms.compute()
    assert summary["depth/abs_rel"] is None and summary["depth/valid_px"] == 0
    assert ms["depth"].max_depth == 50.0


def test_metric_set_errors() -> None:
    with pytest.raises(RegistryError, match="unknown metric kind 'normals'; known: .*depth"):
        MetricSet({"n": "normals"})
    with pytest.raises(ConfigError, match="needs a 'kind'"):
        MetricSet({"d": {"max_depth": 3.0}})
    with pytest.raises(ConfigError, match="bad options .* for metric kind 'depth'"):
        MetricSet({"d": {"kind": "depth", "max_deepth": 3.0}})
