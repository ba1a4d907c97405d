"""``tadp train-task`` (issue 5 item 3): one new task trains on a frozen base model; the freeze is
proved by checksums of every other tensor, and a broken freeze is caught before a bundle exists.

The base model is a tiny config at 64x128 with its shared adapters moved away from their zero
init (so a leak into them would change outputs), saved with ``save_model``; data are 8 synthetic
frames. Two optimizer steps are enough to move every tensor of the new task."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import perception.training.trainer as trainer_mod
from perception.cli import main as tadp
from perception.config import TaskConfig, load_config
from perception.data.readers import SyntheticDataset
from perception.data.synthetic import SynthConfig, write_dataset
from perception.models.network import MultiTaskNet
from perception.training.bundle import load_bundle_into, read_bundle
from perception.training.freeze import FreezeError, FreezeGuard
from perception.training.model_file import load_model, save_model
from perception.training.modes import set_trainable, state_checksums
from perception.training.trainer import TrainConfig, Trainer

SIZE = (64, 128)




@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_task")
    torch.manual_seed(0)
    model = MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE)))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name or "prompt_gates" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    base = save_model(model, root / "base.safetensors")
    data = write_dataset(root / "data", 8, seed=5, config=SynthConfig(height=SIZE[0], width=SIZE[1]))
    return {"base": base, "data": data}


def _args(setup: dict[str, Path], out: Path, adapter: str, name: str = "corridor") -> list[str]:
    args = ["train-task", "--base", str(setup["base"]), "--name", name, "--kind", "mask", "--adapter", adapter,
            "--train", str(setup["data"]), "--val", str(setup["data"]), "--max-val-samples", "2",
            "--max-steps", "2", "--batch-size", "4", "--workers", "0", "--warmup-steps", "0", "--lr", "1e-2",
            "--no-progress", "--out", str(out)]
    if adapter == "fusion":
        args += ["--sources", "segmentation,drivable"]
    return args


@pytest.mark.parametrize("adapter", ["tadformer", "fusion"])
def test_train_task_trains_only_the_task_and_writes_a_bundle(setup: dict[str, Path], tmp_path: Path,
                                                             adapter: str) -> None:
    out = tmp_path / "run"
    assert tadp(_args(setup, out, adapter)) == 0
    proof = json.loads((out / "freeze.json").read_text())
    assert proof["frozen_changed"] == 0 and proof["frozen_tensors"] > 300
    assert proof["task_changed"] > 0
    own = ("tasks.corridor.", "groups.corridor.")
    assert proof["trained"] and all(n.startswith(own) for n in proof["trained"])
    if adapter == "fusion":
        assert not any(n.startswith("groups.") for n in proof["trained"])
    bundle = read_bundle(out / "corridor.tadtask")
    assert bundle.manifest.adapter == adapter and "corridor/miou" in bundle.manifest.metrics
    # The bundle loads onto the untouched base file (its trunk fingerprint matches) and the
    # base tasks' outputs are exactly those of the base model.
    base, with_task = load_model(setup["base"]), load_model(setup["base"])
    load_bundle_into(with_task, bundle)
    image = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = base(image), with_task(image)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert b["corridor"].shape == (1, 2, *SIZE)


def test_freeze_proof_in_process(setup: dict[str, Path]) -> None:
    """The same check, spelled out: every tensor outside the task is bit-identical afterwards,
    while the task's own tensors (including BatchNorm statistics) moved."""
    model = load_model(setup["base"])
    before = state_checksums(model)
    model.add_task(TaskConfig(name="corridor", kind="mask"), own_group=True)
    fresh = state_checksums(model)
    cfg = TrainConfig(max_steps=2, batch_size=4, lr=1e-2, warmup_steps=0, augment=False, val_every=0,
                      progress=False)
    Trainer(model, SyntheticDataset(setup["data"]), None, cfg, mode="adapter", task="corridor").fit()
    after = state_checksums(model)
    assert all(after[k] == v for k, v in before.items())
    task_keys = [k for k in after if k not in before]
    assert task_keys and sum(after[k] != fresh[k] for k in task_keys) > 0.9 * len(task_keys)
    assert any(after[k] != fresh[k] for k in task_keys if k.endswith("running_mean"))
    # The prompt up-projections stay the base group's copy (shared, as in the paper).
    up = [k for k in task_keys if ".prompt_up." in k]
    assert up and all(after[k] == fresh[k] == before[k.replace("groups.corridor.", "groups.base.")]
                      for k in up)


def test_full_fine_tuning_baseline_writes_a_model_not_a_bundle(setup: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """``--adapter full``: the reference the bundles are compared with. Every weight trains on
    the new task's loss, so the trunk moves and the result is a whole model file."""
    out = tmp_path / "full"
    assert tadp(_args(setup, out, "full")) == 0
    assert not (out / "corridor.tadtask").exists() and not (out / "freeze.json").exists()
    base, tuned = load_model(setup["base"]), load_model(out / "model.safetensors")
    assert "corridor" in tuned.tasks and "corridor" not in base.tasks
    before, after = state_checksums(base), state_checksums(tuned)
    trunk = [k for k in before if k.startswith("encoder.") and "relative_position_index" not in k]
    assert sum(before[k] != after[k] for k in trunk) > 0.5 * len(trunk)
    assert "corridor/miou" in json.loads((out / "metrics.json").read_text())


def _leaky_set_trainable(model, mode, task=None):  # noqa: ANN001, ANN202 - mirrors set_trainable
    """A buggy training mode: also unfreezes the (shared) patch embedding."""
    names = set_trainable(model, mode, task)
    model.encoder.patch_embed.proj.weight.requires_grad_(True)
    return names | {"encoder.patch_embed.proj.weight"}


def test_a_leak_is_refused_before_training(setup: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(trainer_mod, "set_trainable", _leaky_set_trainable)
    out = tmp_path / "run"
    assert tadp(_args(setup, out, "tadformer")) == 2
    err = capsys.readouterr().err
    assert "parameters outside task 'corridor' are trainable: encoder.patch_embed.proj.weight" in err
    assert not list(out.glob("*.tadtask"))


def test_a_changed_frozen_tensor_fails_the_run(setup: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Even when the up-front check is bypassed, the checksums after training catch the leak."""
    monkeypatch.setattr(trainer_mod, "set_trainable", _leaky_set_trainable)
    monkeypatch.setattr(FreezeGuard, "check_trainable", lambda self: None)
    out = tmp_path / "run"
    assert tadp(_args(setup, out, "fusion")) == 2
    err = capsys.readouterr().err
    assert "freeze violated while training task 'corridor'" in err
    assert "encoder.patch_embed.proj.weight" in err
    assert not list(out.glob("*.tadtask")) and not (out / "freeze.json").exists()


def test_freeze_guard_names_changed_buffers(setup: dict[str, Path]) -> None:
    model = load_model(setup["base"])
    guard = FreezeGuard(model, "corridor")
    model.add_task(TaskConfig(name="corridor", kind="mask"))
    with torch.no_grad():
        model.tasks["corridor"].decoder.head.weight.add_(1.0)  # the task's own: allowed
    assert guard.check()["task_changed"] > 0
    with torch.no_grad():
        model.tasks["lanes"].decoder.fuse[1].running_mean.add_(1e-3)  # another task's BN statistics
    with pytest.raises(FreezeError, match=r"1 frozen tensors changed \(tasks\.lanes\.decoder\.fuse\.1\.running_mean\)"):
        guard.check()
