"""``tadp eval`` and the shared evaluation loop (issue 5 item 5): the plumbing from raw outputs to
metrics is right (an oracle model scores perfectly, also when labels are larger than the model
input), the CLI writes JSON and Markdown that agree with the library, bundles are evaluated, real
datasets open through the same specs, and bad specs fail with a clear message."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.cli import main as tadp
from perception.config import TaskConfig, load_config
from perception.data.synthetic import SynthConfig, write_dataset
from perception.errors import DataError
from perception.evaluation.evaluate import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    evaluate,
    metrics_markdown,
    open_dataset,
)
from perception.models.network import MultiTaskNet
from perception.training.bundle import load_bundle_into, read_bundle, save_bundle
from perception.training.losses import MultiTaskLoss
from perception.training.model_file import load_model, save_model

SIZE = (64, 128)




@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base model file, a corridor bundle for it, and 4 synthetic frames at 128x256 (twice the
    model input, so predictions are scored after resizing back to the labels)."""
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE))).eval()
    base = save_model(model, root / "base.safetensors")
    model.add_task(TaskConfig(name="corridor", kind="mask"))
    bundle = save_bundle(model, "corridor", root)
    data = write_dataset(root / "data", 4, seed=9, config=SynthConfig(height=128, width=256))
    return {"base": base, "bundle": bundle, "data": data}


def _oracle_samples(n: int = 6, shape: tuple[int, int] = (128, 256)) -> list[dict]:
    """Frame k is uniformly class k (its grey level encodes k) at depth k + 1 metres."""
    out = []
    for k in range(n):
        full = np.full(shape, k, np.uint8)
        out.append({"image": np.full((*shape, 3), 25 * k, np.uint8), "segmentation": full,
                    "drivable": full % 3, "lanes": full % 2, "depth": np.full(shape, k + 1.0, np.float32),
                    "meta": {"id": str(k)}})
    return out


def _oracle_forward(images: torch.Tensor, tasks: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Reads k back from the normalised image and answers with confident logits / log-depth."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    k = torch.round((images * std + mean)[:, 0].mean(dim=(1, 2)) * 255 / 25).long()  # [B]
    h, w = images.shape[-2:]

    def onehot(ids: torch.Tensor, n: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(ids, n).float().mul(20).view(-1, n, 1, 1).expand(-1, n, h, w)

    depth = (torch.log(k.float() + 1) - math.log(10.0)).view(-1, 1, 1, 1).expand(-1, 1, h, w)
    return {"segmentation": onehot(k, 9), "drivable": onehot(k % 3, 3), "lanes": onehot(k % 2, 2), "depth": depth}


def test_an_oracle_scores_perfectly_at_label_resolution() -> None:
    model = MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE)))
    model.forward = _oracle_forward  # type: ignore[method-assign]
    result = evaluate(model, _oracle_samples(), batch_size=4,
                      loss=MultiTaskLoss([model.tasks[t].cfg for t in model.tasks]))
    m = result.metrics
    assert result.samples == 6 and not result.unlabelled
    assert m["segmentation/miou"] == 1.0 and m["segmentation/pixel_acc"] == 1.0
    assert m["segmentation/iou/vehicle"] is None  # class 8 appears nowhere: undefined, not 0
    assert m["drivable/miou"] == 1.0 and m["lanes/iou"] == 1.0 and m["lanes/acc"] == 1.0
    assert m["depth/abs_rel"] == pytest.approx(0.0, abs=1e-6) and m["depth/delta1"] == 1.0
    assert m["depth/valid_px"] == 6 * 128 * 256
    assert result.losses["segmentation"] < 1e-6 and set(result.losses) == {*model.tasks, "loss"}


def _camera_at(x: float) -> list:  # labels are 128 rows, the input 64: fy/2 at the input
    return [[x, 0.0, 127.5], [0.0, x, 63.5], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize(("setting", "key", "meta", "exact", "longer", "flag"), [
    ({"focal_px": 100.0}, "K", _camera_at, 200.0, 300.0, "intrinsics"),
    ({"height_m": 1.2, "height_exponent": 1.0}, "mounting",
     lambda z: {"x_m": 1.0, "y_m": 0.0, "z_m": z}, 1.2, 1.8, "mounting"),
], ids=["focal_length", "mounting_height"])
def test_depth_follows_each_samples_camera(setting, key, meta, exact, longer, flag) -> None:
    """With ``meta["K"]`` (``meta["mounting"]`` for a model with a height rule), depth is scored
    for the sample's own camera: the oracle is exact for a camera at the model's reference and
    1.5x too far for a lens 1.5x longer (a camera mounted 1.5x higher): AbsRel 0.5.
    ``intrinsics=False`` (``mounting=False``) scores the training cameras' scale."""
    model = MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE)))
    model.update_task("depth", **setting)
    model.forward = _oracle_forward  # type: ignore[method-assign]

    def at(value: float) -> list[dict]:
        samples = _oracle_samples()
        for s in samples:
            s["meta"][key] = meta(value)
        return samples

    def abs_rel(samples: list[dict], **kw) -> float:
        return evaluate(model, samples, batch_size=4, tasks=["depth"], **kw).metrics["depth/abs_rel"]

    assert abs_rel(at(exact)) == pytest.approx(0.0, abs=1e-6)
    assert abs_rel(at(longer)) == pytest.approx(0.5, abs=1e-6)
    assert abs_rel(at(longer), **{flag: False}) == pytest.approx(0.0, abs=1e-6)
    assert abs_rel(_oracle_samples()) == pytest.approx(0.0, abs=1e-6)  # nothing to follow


def test_cli_eval_writes_json_and_markdown(saved: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    rc = tadp(["eval", "--model", str(saved["base"]), "--bundle", str(saved["bundle"]), "--data",
               str(saved["data"]), "--batch-size", "3", "--no-progress", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["samples"] == 4 and report["tasks"] == ["segmentation", "depth", "drivable", "lanes", "corridor"]
    metrics = report["metrics"]
    for key in ("segmentation/miou", "depth/abs_rel", "drivable/miou_binary", "lanes/iou", "corridor/miou"):
        assert key in metrics, key
    # Same numbers as the library on the same model and data (batching does not matter).
    model = load_model(saved["base"])
    load_bundle_into(model, read_bundle(saved["bundle"]))
    direct = evaluate(model, open_dataset(saved["data"]), batch_size=3).metrics
    assert metrics == pytest.approx(direct, abs=1e-12)
    md = (out / "metrics.md").read_text()
    assert "| corridor | miou |" in md and "## Per-class IoU" in md and "| segmentation | road |" in md
    assert md in capsys.readouterr().out


@pytest.mark.parametrize("native", [True, False])
def test_cli_eval_bf16_on_a_cpu_without_bf16_units_warns(saved: dict[str, Path], native: bool,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The same warning as ``tadp train --bf16`` (torch's CPU probe set to each answer); the
    evaluation still runs."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    rc = tadp(["eval", "--model", str(saved["base"]), "--data", str(saved["data"]), "--tasks", "depth",
               "--bf16", "--no-progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    assert ("without bfloat16 units" in err) is not native
    assert "| depth | abs_rel |" in out


def test_eval_on_real_cityscapes_scores_only_what_is_labelled(saved: dict[str, Path], real_data: Path,
                                                              tmp_path: Path) -> None:
    root = real_data / "mmseg_cityscapes/tests/data/pseudo_cityscapes_dataset"
    rc = tadp(["eval", "--model", str(saved["base"]), "--data", f"cityscapes:{root},split=val", "--no-progress",
               "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["unlabelled"] == ["depth", "lanes"]
    assert {k.split("/")[0] for k in report["metrics"]} == {"segmentation", "drivable"}
    # Cityscapes only knows "road": predicted "alternative" counts as drivable, so the
    # 3-class mIoU equals the binary one (direct/alternative merged).
    assert report["metrics"]["drivable/miou"] == pytest.approx(report["metrics"]["drivable/miou_binary"])


def test_dataset_specs_fail_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="prefix the path with its kind, one of synthetic, bdd100k"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match=r"unknown options \['split'\] for synthetic"):
        open_dataset(f"synthetic:{tmp_path},split=val")
    with pytest.raises(DataError, match="option 'val' is not key=value"):
        open_dataset(f"cityscapes:{tmp_path},val")
    with pytest.raises(DataError, match="Cityscapes images not found"):
        open_dataset(f"cityscapes:{tmp_path}")


def test_markdown_report_layout() -> None:
    md = metrics_markdown({"seg/miou": 0.5, "seg/iou/road": None, "depth/valid_px": 12}, "T")
    assert md.splitlines()[:5] == ["# T", "", "| task | metric | value |", "|---|---|---|", "| seg | miou | 0.5000 |"]
    assert "| depth | valid_px | 12 |" in md and "| seg | road | n/a |" in md


def test_training_normalises_like_the_runtime() -> None:
    """Train/eval and the engine must feed the network identically (ImageNet mean/std, RGB)."""
    from perception.evaluation.evaluate import normalize_images
    from perception.runtime.frames import normalize

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ours = normalize_images(torch.from_numpy(rgb.transpose(2, 0, 1)).float().div(255.0)[None])[0]
    assert np.allclose(ours.numpy(), normalize(rgb), atol=1e-5)
