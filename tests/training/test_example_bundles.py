"""The shipped ``corridor`` example bundles (issue 5 item 7): both load onto the shipped default
model (trunk fingerprint), train at most 2 % of the trunk's parameters, leave the base tasks'
outputs bit-identical, and find the ego corridor on synthetic frames they were never trained or
validated on (seed 77, disjoint from the training seed 1001 and the validation seed 2002)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception.cli import main as tadp
from perception.data.readers import SyntheticDataset
from perception.data.synthetic import SynthConfig, write_dataset
from perception.evaluation.evaluate import evaluate
from perception.runtime.default_model import DEFAULT_MODEL, example_bundle
from perception.training.bundle import load_bundle_into, read_bundle
from perception.training.model_file import load_model
from perception.training.modes import trainable_names

MIN_IOU = 0.80  # corridor IoU on unseen frames; docs/peft_study.md has the validation figures


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("unseen") / "ds", 8, seed=77,
                         config=SynthConfig(height=256, width=512))


@pytest.mark.parametrize("adapter,mode", [("fusion", "fusion"), ("tadformer", "adapter")])
def test_example_bundle_on_the_default_model(adapter: str, mode: str, frames: Path) -> None:
    torch.manual_seed(0)
    bundle = read_bundle(example_bundle(adapter))
    assert bundle.name == "corridor" and bundle.manifest.adapter == adapter
    base, model = load_model(DEFAULT_MODEL), load_model(DEFAULT_MODEL)
    load_bundle_into(model, bundle)  # refuses a bundle trained on another trunk
    params = dict(model.named_parameters())
    trunk = sum(p.numel() for n, p in params.items() if n.startswith("encoder."))
    trained = sum(params[n].numel() for n in trainable_names(model, mode, "corridor"))
    assert 0 < trained <= 0.02 * trunk, (trained, trunk)
    image = torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = base.eval()(image), model.eval()(image)
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = evaluate(model, SyntheticDataset(frames), tasks=["corridor"])
    iou = result.metrics["corridor/iou/foreground"]
    assert iou >= MIN_IOU, result.metrics
    assert np.isfinite(bundle.manifest.metrics["corridor/iou/foreground"])


@pytest.mark.parametrize("adapter", ["fusion", "tadformer"])
def test_cli_verifies_the_example_bundles(adapter: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert tadp(["bundle", "verify", str(example_bundle(adapter)), "--weights", str(DEFAULT_MODEL)]) == 0
    assert "corridor" in capsys.readouterr().out
    assert tadp(["bundle", "verify", str(example_bundle(adapter))]) == 0  # the default, by default
    assert f"fits model 'tiny': trunk and source fingerprints of {DEFAULT_MODEL}" in \
        capsys.readouterr().out


def test_unknown_example_names_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="fusion/corridor.tadtask"):
        example_bundle("mtlora")
