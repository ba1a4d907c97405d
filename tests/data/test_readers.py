"""Real-dataset readers on the real files in ../shared/data/real (issue 3 acceptance)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.data.classes import IGNORE_INDEX, class_names
from perception.data.readers import (
    BDD100KDataset,
    CamVidDataset,
    CityscapesDataset,
    KittiDepthDataset,
    TuSimpleDataset,
    decode_bdd100k_lanes,
)
from perception.data.readers.bdd100k import bdd100k_drivable_to_ours
from perception.data.readers.cityscapes import cityscapes_labelid_to_trainid
from perception.data.readers.image_file import read_label, read_rgb
from perception.data.readers.tusimple import rasterize_tusimple
from perception.data.sample import validate_sample
from perception.errors import DataError

NAMES = class_names()
ROAD, SIDEWALK, SKY, VEHICLE = (NAMES.index(n) for n in ("road", "sidewalk", "sky", "vehicle"))


def test_kitti_lidar_gives_documented_sparse_depth(real_data: Path) -> None:
    ds = KittiDepthDataset(real_data / "kitti_object_vis/data/object/training")
    assert len(ds) == 1  # only frame 000001 has a scan
    sample = ds[0]
    validate_sample(sample)
    depth = sample["depth"]
    assert sample["meta"]["id"] == "000001" and sample["image"].shape == (375, 1242, 3)
    assert sample["meta"]["lidar_points"] == 18630
    valid = depth[depth > 0]
    assert 18000 < valid.size <= 18630  # a few points share a pixel
    assert 4.75 < valid.min() < 4.8 and 76.7 < valid.max() < 76.75
    assert sample["meta"]["K"][0][0] == pytest.approx(721.5377)
    assert sample["meta"]["mounting"] == {"z_m": 1.65}
    assert {o["type"] for o in sample["meta"]["objects"]} >= {"Car"}


def test_kitti_camera_height_is_that_of_the_road_in_the_scan(real_data: Path) -> None:
    """The 1.65 m the reader gives as the camera's mounting height is where the scan's road
    lies: the densest 2 cm band of points below the camera, 3-30 m ahead, in the rectified
    camera frame (y down)."""
    from perception.data.readers.kitti import CAMERA_HEIGHT_M, read_kitti_calib, read_velodyne

    root = real_data / "kitti_object_vis/data/object/training"
    calib = read_kitti_calib(root / "calib/000001.txt")
    pts = read_velodyne(root / "velodyne/000001.bin")[:, :3]
    cam = (np.asarray(calib["R0_rect"]).reshape(3, 3)
           @ (np.asarray(calib["Tr_velo_to_cam"]).reshape(3, 4) @ np.c_[pts, np.ones(len(pts))].T)).T
    ahead = cam[(cam[:, 2] > 3) & (cam[:, 2] < 30) & (np.abs(cam[:, 0]) < 6)]
    below = ahead[(ahead[:, 1] > 1.0) & (ahead[:, 1] < 2.2), 1]
    counts, edges = np.histogram(below, bins=60)
    road_y = 0.5 * (edges[counts.argmax()] + edges[counts.argmax() + 1])
    assert counts.max() > 1000 and abs(road_y - CAMERA_HEIGHT_M) < 0.02


def test_cityscapes_label_ids_match_train_ids(real_data: Path) -> None:
    root = real_data / "mmseg_cityscapes/tests/data/pseudo_cityscapes_dataset"
    gt = root / "gtFine/val/frankfurt"
    label_ids = read_label(gt / "frankfurt_000000_000294_gtFine_labelIds.png")
    train_ids = read_label(gt / "frankfurt_000000_000294_gtFine_labelTrainIds.png")
    assert set(np.unique(label_ids)) == {1, 2, 3, 4, 7, 8, 11, 13, 17, 20, 21, 23, 24, 26}
    assert set(np.unique(train_ids)) == {0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255}
    # The fixture's two files were scaled down separately, so 77 edge pixels disagree.
    assert (cityscapes_labelid_to_trainid(label_ids) == train_ids).mean() > 0.995
    ds = CityscapesDataset(root, split="val")
    sample = ds[0]
    validate_sample(sample)
    seg, drv = sample["segmentation"], sample["drivable"]
    assert sample["image"].shape == (128, 256, 3)
    assert np.array_equal(seg == ROAD, label_ids == 7) and np.array_equal(seg == VEHICLE, label_ids == 26)
    assert np.array_equal(drv == 1, label_ids == 7) and sample["meta"]["drivable_binary"]
    assert np.all(drv[cityscapes_labelid_to_trainid(label_ids) == 255] == IGNORE_INDEX)


def test_cityscapes_palette_demo_image_decodes_to_rgb(real_data: Path) -> None:
    image = read_rgb(real_data / "mmseg_cityscapes/demo/demo.png")
    assert image.shape == (512, 1024, 3) and image.dtype == np.uint8 and image.std() > 20


def test_camvid_eleven_classes(real_data: Path) -> None:
    root = real_data / "segnet_camvid/CamVid"
    ds = CamVidDataset(root, split="test")
    assert len(ds) == 8
    for i in range(len(ds)):
        sample = ds[i]
        validate_sample(sample)
        raw = read_label(root / "testannot" / f"{sample['meta']['id']}.png")
        assert raw.shape == (360, 480) and raw.max() <= 11
        seg = sample["segmentation"]
        assert np.array_equal(seg == ROAD, raw == 3) and np.array_equal(seg == SKY, raw == 0)
        assert np.array_equal(seg == SIDEWALK, raw == 4) and np.array_equal(seg == VEHICLE, raw == 8)
        assert np.all(seg[raw == 11] == IGNORE_INDEX) and np.all(sample["drivable"][raw == 11] == IGNORE_INDEX)
        assert np.array_equal(sample["drivable"] == 1, raw == 3)


def test_tusimple_lanenet_masks(real_data: Path) -> None:
    root = real_data / "lanenet_tusimple/data/training_data_example"
    ds = TuSimpleDataset(root)
    assert len(ds) == 3
    for i in range(3):
        sample = ds[i]
        validate_sample(sample)
        binary = read_label(root / "gt_binary_image" / f"{sample['meta']['id']}.png")
        assert set(np.unique(binary)) == {0, 255}
        assert np.array_equal(sample["lanes"] == 1, binary == 255)
        inst = sample["lane_instances"]
        assert 2 <= inst.max() <= 5 and np.array_equal(inst > 0, binary == 255)


def test_tusimple_json_rasterises_polylines(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "f.jpg"), np.zeros((720, 1280, 3), np.uint8))
    rec = {"raw_file": "f.jpg", "h_samples": [400, 500, 600, 700],
           "lanes": [[600, 500, 400, 300], [-2, 700, 800, 900]]}
    (tmp_path / "labels.json").write_text(json.dumps(rec) + "\n")
    sample = TuSimpleDataset(tmp_path, json_files=[tmp_path / "labels.json"])[0]
    assert set(np.unique(sample["lane_instances"])) == {0, 1, 2}
    assert sample["lane_instances"][400, 600] == 1 and sample["lane_instances"][450, 600] == 0
    assert np.array_equal(rasterize_tusimple(rec, 720, 1280) > 0, sample["lanes"] == 1)


_BDD_LANES = "bdd100k_toolkit_labels/tests/eval/testcases/lane/gts"


@pytest.mark.parametrize("name,counts", [
    ("fe189115-9981a740", {0: 351, 4: 3007, 6: 2444, 7: 2660}),
    ("fe189115-9cc4a501", {3: 2865, 4: 887}),
    ("fe189115-adbd209a", {4: 2482}),
    ("fe189115-c31cac5a", {4: 1582, 6: 3236, 7: 2908}),
])
def test_bdd100k_lane_marks_decode(real_data: Path, name: str, counts: dict[int, int]) -> None:
    mask = read_label(real_data / _BDD_LANES / f"{name}.png")
    fields = decode_bdd100k_lanes(mask)
    cats, n = np.unique(fields["category"][fields["category"] != 255], return_counts=True)
    assert dict(zip(cats.tolist(), n.tolist(), strict=True)) == counts
    assert set(np.unique(fields["style"])) <= {0, 1, 255}
    lines = sum(v for k, v in counts.items() if k in (1, 2, 3, 5, 6, 7))
    assert (fields["lanes"] == 1).sum() == lines
    assert (fields["lanes"] == IGNORE_INDEX).sum() == counts.get(0, 0) + counts.get(4, 0)


def test_bdd100k_dataset_with_real_labels(real_data: Path, tmp_path: Path) -> None:
    """The toolkit ships labels without their frames: pair them with blank images of the same size."""
    images = tmp_path / "images"
    images.mkdir()
    lanes_dir = real_data / _BDD_LANES
    for path in sorted(lanes_dir.glob("*.png")):
        cv2.imwrite(str(images / f"{path.stem}.jpg"), np.zeros((720, 1280, 3), np.uint8))
    semseg = tmp_path / "semseg"
    semseg.mkdir()
    src = real_data / "bdd100k_toolkit_labels/tests/label/testcases/semseg_mask.png"
    (semseg / "fe189115-9981a740.png").write_bytes(src.read_bytes())
    pan = tmp_path / "panseg"
    pan.mkdir()
    src = real_data / "bdd100k_toolkit_labels/tests/label/testcases/panseg_bdd100k/panseg_mask.png"
    (pan / "fe189115-9cc4a501.png").write_bytes(src.read_bytes())
    ds = BDD100KDataset(images, lanes=lanes_dir, semseg=semseg, panseg=pan)
    assert len(ds) == 4
    by_id = {ds[i]["meta"]["id"]: ds[i] for i in range(len(ds))}
    for sample in by_id.values():
        validate_sample(sample)
        assert set(np.unique(sample["lanes"])) <= {0, 1, IGNORE_INDEX}
    seg = by_id["fe189115-9981a740"]["segmentation"]
    assert set(np.unique(seg)) == {VEHICLE, IGNORE_INDEX}  # semseg_mask holds car (trainId 13) only
    pan_seg = by_id["fe189115-9cc4a501"]["segmentation"]
    assert {ROAD, SIDEWALK, SKY, VEHICLE} <= set(np.unique(pan_seg))


def test_bdd100k_drivable_encoding_is_converted() -> None:
    bdd = np.array([[0, 1, 2, 255]], np.uint8)
    assert bdd100k_drivable_to_ours(bdd).tolist() == [[1, 2, 0, IGNORE_INDEX]]


def test_missing_folders_raise_data_error(tmp_path: Path) -> None:
    for make in (lambda: CamVidDataset(tmp_path), lambda: CityscapesDataset(tmp_path),
                 lambda: KittiDepthDataset(tmp_path), lambda: TuSimpleDataset(tmp_path),
                 lambda: BDD100KDataset(tmp_path / "nope")):
        with pytest.raises(DataError):
            make()
