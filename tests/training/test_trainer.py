"""Base multi-task training (issue 5 item 2): the loss goes down on held-out data, resume is
bit-exact, the schedule and loss weighting do what they claim, augmentation keeps labels aligned.

Data are small synthetic sets rendered in ``tmp_path`` at 64x128 (the tiny config's window-8
Swin runs at any multiple of 32; this size keeps a few dozen steps well under a minute on two
busy cores). Torch runs single-threaded here: on a shared 2-core machine one thread per
process is several times faster than two fighting for the cores.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.cli import main as tadp
from perception.config import TaskConfig, load_config
from perception.data.augment import NO_AUGMENT, Augment, AugmentConfig
from perception.data.readers import SyntheticDataset
from perception.data.synthetic import SynthConfig, write_dataset
from perception.errors import ConfigError, DataError
from perception.models.network import MultiTaskNet
from perception.training.losses import MultiTaskLoss
from perception.training.model_file import load_model, warm_start
from perception.training.run_dir import RunDir, load_model_from
from perception.training.trainer import TrainConfig, Trainer, lr_factor

SIZE = (64, 128)




@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train (32 frames), validation (8, other worlds) and a small set (8) for quick runs."""
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(height=SIZE[0], width=SIZE[1])
    return {"train": write_dataset(root / "train", 32, seed=11, config=cfg),
            "val": write_dataset(root / "val", 8, seed=12, config=cfg),
            "small": write_dataset(root / "small", 8, seed=3, config=cfg)}


def _model(seed: int = 0) -> MultiTaskNet:
    torch.manual_seed(seed)
    return MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE)))


def test_training_lowers_the_validation_loss(data: dict[str, Path], tmp_path: Path) -> None:
    """40 steps of the tiny config (mode ``full``: what ``tadp train`` picks without Swin
    weights), with augmentation, fixed seed: held-out loss ends below 85 % of its start."""
    run = RunDir.create(tmp_path / "run")
    cfg = TrainConfig(max_steps=40, batch_size=4, lr=3e-3, warmup_steps=3, val_every=1000, progress=False)
    trainer = Trainer(_model(), SyntheticDataset(data["train"]), SyntheticDataset(data["val"]), cfg, run,
                      mode="full")
    record = trainer.fit()
    epochs = run.history["epochs"]
    start, end = epochs[0]["val"]["loss"], epochs[-1]["val"]["loss"]
    assert epochs[0]["step"] == 0 and epochs[-1]["step"] == 40
    assert end < 0.85 * start, (start, end)
    assert record["metrics"]["segmentation/miou"] > epochs[0]["metrics"]["segmentation/miou"]
    for name in ("history.json", "loss_curves.png", "metric_curves.png", "checkpoints/best/state.json",
                 "checkpoints/last/model.safetensors"):
        assert (run.path / name).is_file(), name
    history = json.loads((run.path / "history.json").read_text())
    assert [r["step"] for r in history["steps"]] == list(range(1, 41))
    # The exported model reloads to the same outputs.
    path = trainer.export(record["metrics"])
    image = torch.randn(1, 3, *SIZE)
    loaded = load_model_from(path)
    trainer.model.eval()
    with torch.no_grad():
        a, b = trainer.model(image), loaded(image)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run.path / "metrics.json").read_text())["depth/abs_rel"] is not None


@pytest.mark.parametrize("stop", [2, 3], ids=["epoch-boundary", "mid-epoch"])
def test_resume_is_bit_exact(data: dict[str, Path], tmp_path: Path, stop: int) -> None:
    """Stop, reload from the checkpoint in a fresh trainer, finish: identical to one straight run
    (optimizer moments, schedule, learned loss weights, data order, augmentation and dropout)."""
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=3e-3, warmup_steps=1, uncertainty=True, val_every=0,
                      progress=False)

    def trainer(out: str) -> Trainer:
        return Trainer(_model(), SyntheticDataset(data["small"]), None, cfg,
                       RunDir.create(tmp_path / out, resume=True), mode="full")

    straight = trainer("a")
    straight.fit()
    trainer("b").fit(stop_at=stop)
    resumed = trainer("b")
    resumed.fit(resume_from=tmp_path / "b")
    assert resumed.step == straight.step == 4
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])][:5]
    assert torch.equal(straight.loss.log_vars["depth"], resumed.loss.log_vars["depth"])
    steps = [r["step"] for r in json.loads((tmp_path / "b" / "history.json").read_text())["steps"]]
    assert steps == [1, 2, 3, 4]


def test_cli_train_and_resume(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
              "--val", str(data["small"]), "--max-val-samples", "2", "--batch-size", "4", "--workers", "0",
              "--warmup-steps", "1", "--set", "adapter.dropout=0.0", "--no-progress", "--out", str(out)]
    assert tadp([*common, "--max-steps", "2"]) == 0
    assert tadp([*common, "--max-steps", "2"]) == 2  # an existing run is never clobbered silently
    assert tadp([*common, "--max-steps", "4", "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["steps"]] == [1, 2, 3, 4]
    settings = json.loads((out / "train.json").read_text())
    assert settings["mode"] == "full" and settings["settings"]["max_steps"] == 4
    assert (out / "model.safetensors").is_file() and (out / "model.yaml").is_file()
    assert load_model_from(out).cfg.input_size == SIZE
    assert load_model_from(out).cfg.adapter.dropout == 0.0


def test_training_records_the_cameras_focal_length_and_height(
        data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``tadp train`` records the training cameras' focal length and mounting height with the
    depth task (the scale depth is learned at); a continued model keeps its own; data without
    intrinsics leave them unset and say so."""
    from perception.training.camera_reference import (
        measure_focal_px,
        measure_height_m,
        record_camera_reference,
    )

    out = tmp_path / "run"
    assert tadp(["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
                 "--max-steps", "1", "--batch-size", "4", "--workers", "0", "--val-every", "0",
                 "--no-progress", "--out", str(out)]) == 0
    focal, frames = measure_focal_px(SyntheticDataset(data["small"]), 64)
    assert frames == 8 and 0.3 * 64 < focal < 3 * 64  # about the synthetic cameras' 75-95 deg FOV
    height, frames = measure_height_m(SyntheticDataset(data["small"]))
    assert frames == 8 and 1.2 <= height <= 1.7  # the synthetic mountings' range
    log = capsys.readouterr().out
    assert f"depth: training cameras' focal length {focal:.2f} px at 64x128 (8 frames)" in log
    assert f"depth: training cameras' mounting height {height:.3f} m (8 frames)" in log
    assert load_model_from(out).cfg.task("depth").focal_px == round(focal, 2)
    assert yaml_task(out / "model.yaml")["focal_px"] == round(focal, 2)
    assert yaml_task(out / "model.yaml")["height_m"] == round(height, 3)
    start = load_model_from(out)
    start.update_task("depth", focal_px=123.0, height_m=1.5)
    assert record_camera_reference(start, SyntheticDataset(data["small"])) == []  # learned there
    assert start.cfg.task("depth").focal_px == 123.0 and start.cfg.task("depth").height_m == 1.5
    bare = _model()
    bare.update_task("depth", height_exponent=1.0)
    no_k = [{k: v for k, v in SyntheticDataset(data["small"])[0].items() if k != "meta"}]
    lines = record_camera_reference(bare, no_k)
    assert "carry no intrinsics" in lines[0] and "carry no mounting" in lines[1]
    assert bare.cfg.task("depth").focal_px is None and bare.cfg.task("depth").height_m is None
    with pytest.raises(ConfigError, match=r"cannot change \['kind'\] of 'depth'"):
        bare.update_task("depth", kind="segmentation")


def yaml_task(path: Path, name: str = "depth") -> dict:
    import yaml

    return next(t for t in yaml.safe_load(path.read_text())["config"]["tasks"] if t["name"] == name)


def test_cli_stop_at_pauses_then_resumes(data: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``--stop-at`` time-boxes a run: it pauses on the schedule of ``--max-steps`` with a
    checkpoint and no exported model; ``--resume`` finishes it exactly as one straight run."""
    common = ["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
              "--batch-size", "4", "--workers", "0", "--warmup-steps", "1", "--val-every", "0",
              "--set", "adapter.dropout=0.0", "--no-progress", "--max-steps", "4"]
    assert tadp([*common, "--out", str(tmp_path / "straight")]) == 0
    paused = tmp_path / "paused"
    assert tadp([*common, "--stop-at", "3", "--out", str(paused)]) == 0
    assert f"paused at step 3 of 4; checkpoint: {paused}/checkpoints/last" in capsys.readouterr().out
    assert not (paused / "model.safetensors").exists()
    assert json.loads((paused / "checkpoints" / "last" / "state.json").read_text())["step"] == 3
    assert tadp([*common, "--resume", "--out", str(paused)]) == 0
    a, b = load_model_from(tmp_path / "straight").state_dict(), load_model_from(paused).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert tadp([*common, "--stop-at", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--stop-at 0: must be a step >= 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_killed_run_resumes_with_its_whole_history(data: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, a lost session) runs no ``finally``: the step history must reach
    the disk with each checkpoint, so ``--resume`` continues it without a gap."""
    out = tmp_path / "run"
    args = ["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
            "--batch-size", "2", "--workers", "0", "--threads", "1", "--val-every", "0",
            "--checkpoint-every", "2", "--no-progress", "--max-steps", "400", "--out", str(out)]
    state = out / "checkpoints" / "last" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (state.is_file() and json.loads(state.read_text())["step"] >= 4):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint at step >= 4 within 300 s"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.communicate()
    step = json.loads(state.read_text())["step"]
    steps = [r["step"] for r in json.loads((out / "history.json").read_text())["steps"]]
    assert steps[:step] == list(range(1, step + 1)), steps
    assert tadp([*args, "--resume", "--stop-at", str(step + 2)]) == 0
    steps = [r["step"] for r in json.loads((out / "history.json").read_text())["steps"]]
    assert steps == list(range(1, step + 3)), steps


@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_a_signal_pauses_the_run_at_a_checkpoint(data: dict[str, Path], tmp_path: Path,
                                                 signum: signal.Signals, workers: int) -> None:
    """SIGTERM (a scheduler, ``timeout``, preemption) and Ctrl-C pause the run after the current
    step with a checkpoint at that step, not at the last ``--checkpoint-every`` one: resuming
    trains no step twice. The signal goes to the whole process group, as Ctrl-C in a terminal
    does, so a data-loader worker gets it too and must neither die of it nor pause itself."""
    out = tmp_path / "run"
    args = ["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["train"]),
            "--batch-size", "2", "--workers", str(workers), "--threads", "1", "--val-every", "0",
            "--checkpoint-every", "3", "--no-progress", "--max-steps", "400", "--out", str(out)]
    state = out / "checkpoints" / "last" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not state.is_file():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        time.sleep(0.5)  # somewhere in the steps after the checkpoint
        os.killpg(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signum, stderr
    assert stderr.count(f"{signum.name}: pausing after this step") == 1, stderr  # workers keep quiet
    found = re.search(rf"paused at step (\d+) of 400 by {signum.name}; checkpoint: ", stdout)
    assert found, stdout
    step = int(found.group(1))
    assert json.loads(state.read_text())["step"] == step >= 3
    steps = [r["step"] for r in json.loads((out / "history.json").read_text())["steps"]]
    assert steps == list(range(1, step + 1)), steps
    assert tadp([*args, "--resume", "--stop-at", str(step + 1)]) == 0
    steps = [r["step"] for r in json.loads((out / "history.json").read_text())["steps"]]
    assert steps == list(range(1, step + 2)), steps


def test_export_model_writes_a_paused_runs_model_file(data: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A paused run has a checkpoint and no model file: ``tadp export-model`` writes the file
    that eval, the node and ``--init`` load, with the checkpoint's weights; it never replaces a
    model file unasked, and says what is wrong with a source that is not a model."""
    run = tmp_path / "run"
    assert tadp(["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
                 "--batch-size", "2", "--workers", "0", "--threads", "1", "--val-every", "0",
                 "--no-progress", "--max-steps", "6", "--stop-at", "2", "--out", str(run)]) == 0
    assert not (run / "model.safetensors").exists()
    last, out = run / "checkpoints" / "last", tmp_path / "paused.safetensors"
    assert tadp(["export-model", str(last), "--out", str(out)]) == 0
    assert f"model at step 2 of {last}: {out}" in capsys.readouterr().out
    exported, checkpoint = load_model(out).state_dict(), load_model_from(last).state_dict()
    assert exported.keys() == checkpoint.keys()
    assert all(torch.equal(exported[k], checkpoint[k]) for k in exported)
    before = out.read_bytes()
    assert tadp(["export-model", str(run), "--out", str(out)]) == 2
    assert "already exist; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert tadp(["export-model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "no model at" in capsys.readouterr().err
    assert tadp(["export-model", str(last), "--out", str(tmp_path / "x.pt")]) == 2
    assert "ends in .safetensors" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def test_cli_init_continues_a_saved_model(data: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--init`` starts from a saved model's config and weights (fine-tuning the shipped default),
    and refuses the flags that would build a different model."""
    first = tmp_path / "first"
    assert tadp(["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
                 "--max-steps", "1", "--batch-size", "4", "--workers", "0", "--val-every", "0", "--no-progress",
                 "--out", str(first)]) == 0
    start = load_model_from(first)
    common = ["train", "--init", str(first / "model.safetensors"), "--train", str(data["small"]), "--workers", "0",
              "--batch-size", "4", "--val-every", "0", "--no-progress"]
    assert tadp([*common, "--lr", "1e-12", "--weight-decay", "0", "--max-steps", "1", "--out", str(tmp_path / "a")]) == 0
    same = load_model_from(tmp_path / "a")
    assert same.cfg == start.cfg
    key = "encoder.layers.0.blocks.0.attn.qkv.weight"
    assert torch.allclose(same.state_dict()[key], start.state_dict()[key], atol=1e-9)
    assert json.loads((tmp_path / "a" / "train.json").read_text())["init"] == str(first / "model.safetensors")
    assert tadp([*common[:2], str(first / "checkpoints" / "last"), *common[3:], "--max-steps", "1",
                 "--out", str(tmp_path / "b")]) == 0  # a checkpoint directory works too
    assert not torch.equal(load_model_from(tmp_path / "b").state_dict()[key], start.state_dict()[key])
    capsys.readouterr()
    assert tadp([*common, "--config", "tiny", "--set", "adapter.rank=4", "--out", str(tmp_path / "c")]) == 2
    assert "drop --config" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    # --set changes the architecture of the continued model: what still fits is kept.
    assert tadp([*common, "--set", "adapter.first_task_stage=1", "--lr", "1e-12", "--weight-decay", "0",
                 "--max-steps", "1", "--out", str(tmp_path / "w")]) == 0
    assert "14 dropped" in capsys.readouterr().out
    warm = load_model_from(tmp_path / "w")
    assert warm.cfg.adapter.first_task_stage == 1 and warm.cfg.encoder == start.cfg.encoder
    assert torch.allclose(warm.state_dict()[key], start.state_dict()[key], atol=1e-9)
    record = json.loads((tmp_path / "w" / "train.json").read_text())
    assert record["set"] == ["adapter.first_task_stage=1"]
    assert "groups.base.dtf.0.fc1.filter_std" in record["warm_start"]["dropped"]
    # Depth's sub-pixel head grows its output layer: old channels copied, new ones zero, so the
    # continued model starts out predicting what its source did (to float rounding).
    plain = start.cfg.replace(tasks=[{**asdict(t), "subpixel": 0} for t in start.cfg.tasks])
    source, grown = MultiTaskNet(plain).eval(), MultiTaskNet(start.cfg).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    report = warm_start(source, grown)
    assert report["grown"] == ["tasks.depth.decoder.head.weight", "tasks.depth.decoder.head.bias"]
    assert report["new"] == [] and report["dropped"] == []
    assert grown.state_dict()["tasks.depth.decoder.head.weight"].shape[0] == 17
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = source(x), grown(x)
    assert all(torch.allclose(a[n], b[n], rtol=0, atol=1e-6) for n in a)  # a wider conv rounds
    with pytest.raises(ConfigError, match=r"cannot change \['subpixel'\] of 'depth'"):
        grown.update_task("depth", subpixel=0)
    assert tadp([*common, "--set", "adapter.nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # The zoom augmentation is a training setting, so a continuation may change it.
    assert tadp([*common, "--zoom-prob", "0", "--max-steps", "1", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "train.json").read_text())["augment"]["scale_prob"] == 0.0
    capsys.readouterr()
    assert tadp([*common, "--zoom-prob", "1.5", "--max-steps", "1", "--out", str(tmp_path / "e")]) == 2
    assert "scale_prob must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()

def test_swin_checkpoint_starts_base_mode_and_stays_frozen(data: dict[str, Path], tmp_path: Path) -> None:
    """``--swin-weights`` loads a (timm-layout) Swin file; mode auto is then the paper's base mode,
    which trains LoRA and norms but leaves the Swin matrices exactly as loaded."""
    from safetensors.torch import save_file

    swin = {k: v.clone() for k, v in _model(seed=7).encoder.state_dict().items() if ".lora_" not in k}
    save_file(swin, str(tmp_path / "swin.safetensors"))
    out = tmp_path / "run"
    assert tadp(["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
                 "--swin-weights", str(tmp_path / "swin.safetensors"), "--max-steps", "1", "--batch-size", "4",
                 "--workers", "0", "--val-every", "0", "--no-progress", "--out", str(out)]) == 0
    settings = json.loads((out / "train.json").read_text())
    assert settings["mode"] == "base" and settings["swin_layout"] == "timm"
    trained = load_model_from(out).encoder.state_dict()
    key = "layers.0.blocks.0.attn.qkv.weight"
    assert torch.equal(trained[key], swin[key])
    assert not torch.equal(trained["layers.0.blocks.0.norm1.weight"], swin["layers.0.blocks.0.norm1.weight"])


def test_bf16_autocast_trains(data: dict[str, Path]) -> None:
    cfg = TrainConfig(max_steps=1, batch_size=2, bf16=True, augment=False, val_every=0, progress=False)
    trainer = Trainer(_model(), SyntheticDataset(data["small"]), None, cfg, mode="full")
    before = trainer.model.tasks["depth"].decoder.head.weight.clone()
    trainer.fit()
    assert trainer.step == 1 and not torch.equal(before, trainer.model.tasks["depth"].decoder.head.weight)
    assert trainer.model.tasks["depth"].decoder.head.weight.dtype == torch.float32  # master weights stay fp32


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_units_warns(data: dict[str, Path], tmp_path: Path, native: bool,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Autocast emulates bfloat16 on CPUs without AVX512-BF16 or AMX (6-8x slower on Zen 3),
    so ``--bf16`` there says so; the run still trains. The CPU probe is torch's own, set here
    to each answer since no test machine has both kinds of CPU."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    args = ["train", "--config", "tiny", "--input-size", "64x128", "--train", str(data["small"]),
            "--batch-size", "4", "--workers", "0", "--max-steps", "1", "--warmup-steps", "1",
            "--val-every", "0", "--bf16", "--no-progress", "--out", str(tmp_path / "run")]
    assert tadp(args) == 0
    warned = "without bfloat16 units" in capsys.readouterr().err
    assert warned is not native
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_errors_name_the_problem(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fewer than one batch of 16"):
        Trainer(_model(), SyntheticDataset(data["small"]), None, TrainConfig(batch_size=16, progress=False))
    with pytest.raises(ConfigError, match="batch_size=0"):
        TrainConfig(batch_size=0)
    model = _model()
    model.add_task(TaskConfig(name="normals", kind="normals"))
    with pytest.raises(DataError, match="labels none of the trained tasks"):
        Trainer(model, SyntheticDataset(data["small"]), None, TrainConfig(batch_size=4), mode="adapter",
                task="normals")
    with pytest.raises(ConfigError, match="not a training checkpoint"):
        Trainer(_model(), SyntheticDataset(data["small"]), None, TrainConfig(batch_size=4)).load_checkpoint(tmp_path)


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    f = [lr_factor(s, total=100, warmup=10, min_ratio=0.01) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:9], f[1:10], strict=True))
    assert all(a >= b for a, b in zip(f[10:100], f[11:], strict=True))
    assert f[55] == pytest.approx(0.01 + 0.99 * 0.5) and f[100] == pytest.approx(0.01)


def test_loss_weights_and_uncertainty() -> None:
    tasks = [TaskConfig(name="segmentation", kind="segmentation", loss_weight=1.0),
             TaskConfig(name="depth", kind="depth", loss_weight=3.0)]
    g = torch.Generator().manual_seed(0)
    raw = {"segmentation": torch.randn(2, 9, 8, 8, generator=g, requires_grad=True),
           "depth": torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)}
    batch = {"segmentation": torch.randint(0, 9, (2, 8, 8), generator=g), "depth": torch.rand(2, 8, 8, generator=g) * 50}
    fixed_total, parts = MultiTaskLoss(tasks)(raw, batch)
    assert fixed_total.item() == pytest.approx(parts["segmentation"] + 3.0 * parts["depth"], rel=1e-6)
    unc = MultiTaskLoss(tasks, uncertainty=True)
    total, parts_u = unc(raw, batch)
    # s = 0: classification keeps its loss, regression gets the Gaussian 1/2 (Kendall et al.).
    assert total.item() == pytest.approx(parts["segmentation"] + 3.0 * 0.5 * parts["depth"], rel=1e-6)
    assert parts_u["loss"] == pytest.approx(parts["loss"])
    total.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in unc.log_vars.values())
    # A task without labels in the batch adds nothing, but its output stays in the graph (DDP).
    no_depth, parts_n = MultiTaskLoss(tasks)({k: v.detach().requires_grad_() for k, v in raw.items()},
                                             {"segmentation": batch["segmentation"]})
    assert "depth" not in parts_n and no_depth.item() == pytest.approx(parts["segmentation"], rel=1e-6)


def test_depth_is_learned_in_the_training_cameras_focal_length() -> None:
    """With ``focal_px`` recorded, a label is scaled by focal_px / f, f its camera's fy (over the
    zoom that already scaled it); the loss is then that of the prediction scaled by f / focal_px,
    as the runtime scales it. Without K, or without focal_px, labels stay metric."""
    from perception.tasks.depth import silog_loss
    from perception.training.losses import canonical_target

    cfg = TaskConfig("depth", "depth", focal_px=100.0)
    target = torch.full((4, 2, 3), 10.0)
    target[:, 0, 0] = 0.0  # invalid stays invalid
    K = lambda fy: [[fy, 0, 1], [0, fy, 1], [0, 0, 1]]  # noqa: E731
    metas = [{"K": K(200.0)}, {"K": K(200.0), "depth_zoom": 2.0}, {}, None]
    out = canonical_target(target, cfg, {"depth": target, "meta": metas})
    assert out[0, 1, 1] == 5.0 and out[1, 1, 1] == 10.0 and out[2, 1, 1] == 10.0 and out[3, 1, 1] == 10.0
    assert (out[:, 0, 0] == 0).all()
    unset = TaskConfig("depth", "depth")
    assert torch.equal(canonical_target(target, unset, {"depth": target, "meta": metas}), target)
    # Through MultiTaskLoss: a prediction of 5 m in the canonical camera is exact for frame 0.
    loss = MultiTaskLoss([cfg])
    raw = torch.full((1, 1, 2, 3), math.log(0.5))  # 5 m (the head's reference is 10 m)
    _, parts = loss({"depth": raw}, {"depth": target[:1], "meta": metas[:1]})
    assert parts["depth"] == pytest.approx(0.0, abs=1e-3)
    assert parts["depth"] < silog_loss(torch.log(torch.full((1, 2, 3), 5.0)), target[:1]).item()


def test_depth_is_learned_at_the_training_cameras_height() -> None:
    """With a height rule (``height_exponent`` > 0, ``height_m`` recorded), a label is also
    scaled by (height_m / z) ** beta, z its mounting height; samples without a mounting, or a
    model without the rule, keep that factor at 1. Focal length and height combine."""
    from perception.training.losses import canonical_target

    cfg = TaskConfig("depth", "depth", focal_px=100.0, height_m=1.5, height_exponent=1.0)
    target = torch.full((4, 2, 3), 12.0)
    K = [[100.0, 0, 1], [0, 100.0, 1], [0, 0, 1]]
    metas = [{"K": K, "mounting": {"z_m": 1.2}}, {"mounting": {"z_m": 1.8}},
             {"K": [[200.0, 0, 1], [0, 200.0, 1], [0, 0, 1]], "mounting": {"z_m": 1.5}}, {"K": K}]
    out = canonical_target(target, cfg, {"depth": target, "meta": metas})
    assert out[:, 1, 1].tolist() == pytest.approx([15.0, 10.0, 6.0, 12.0])
    half = TaskConfig("depth", "depth", height_m=1.5, height_exponent=0.5)
    assert canonical_target(target, half, {"meta": [{"mounting": {"z_m": 6.0}}] * 4})[0, 0, 0] == 6.0
    off = TaskConfig("depth", "depth", height_m=1.5)  # recorded, but no rule
    assert torch.equal(canonical_target(target, off, {"depth": target, "meta": metas}), target)


# -- augmentation ----------------------------------------------------------------------------
def _blocky_sample(h: int = 64, w: int = 128) -> dict:
    """Labels encoded in the image (class id * 25 in every channel) on 8x8 blocks, constant
    depth, lane instances 1..3 on vertical stripes from left to right."""
    rng = np.random.default_rng(0)
    ids = np.kron(rng.integers(0, 9, (h // 8, w // 8)), np.ones((8, 8), int)).astype(np.uint8)
    inst = np.zeros((h, w), np.uint8)
    for i, x in enumerate((20, 60, 100), 1):
        inst[:, x:x + 4] = i
    return {"image": np.repeat((ids * 25)[..., None], 3, axis=2).astype(np.uint8), "segmentation": ids,
            "drivable": (ids % 3).astype(np.uint8), "lanes": (inst > 0).astype(np.uint8),
            "lane_instances": inst, "depth": np.full((h, w), 10.0, np.float32),
            "meta": {"K": [[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]]}}


def test_geometric_augmentation_keeps_labels_aligned() -> None:
    cfg = AugmentConfig(hflip_prob=0.5, scale_prob=1.0, max_scale=1.5, color_prob=0, blur_prob=0, noise_prob=0,
                        jpeg_prob=0)
    sample = _blocky_sample()
    flips = 0
    for seed in range(12):
        out = Augment(cfg, SIZE, seed=seed)(sample)
        assert out["image"].shape == (*SIZE, 3) and out["segmentation"].shape == SIZE
        # Inside blocks (5x5 neighbourhood of one label) the image must show that label; on block
        # edges the bilinear image and the nearest-neighbour labels legitimately differ.
        seg = out["segmentation"]
        inner = cv2.erode(seg, np.ones((5, 5), np.uint8)) == cv2.dilate(seg, np.ones((5, 5), np.uint8))
        inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False  # edges cut by the crop
        agree = np.round(out["image"][..., 0] / 25.0) == seg
        assert inner.mean() > 0.2 and agree[inner].all(), agree[inner].mean()
        assert np.array_equal(out["drivable"], out["segmentation"] % 3)
        # Zoom by s multiplies the focal length by s and divides depth by s: depth * fx is kept.
        fx = abs(out["meta"]["K"][0][0])
        assert np.allclose(out["depth"] * fx, 1000.0, rtol=0.01)
        # ... and says so: the label is consistent with the unzoomed focal length fy / depth_zoom.
        fy_label = out["meta"]["K"][1][1] / out["meta"].get("depth_zoom", 1.0)
        assert fy_label == pytest.approx(100.0, rel=0.02)
        # Lane instances still count 1..n from left to right (after a flip too).
        inst = out["lane_instances"]
        xs = [np.nonzero(inst == i)[1].mean() for i in np.unique(inst[inst > 0])]
        assert xs == sorted(xs)
        assert np.array_equal(out["lanes"], (inst > 0).astype(np.uint8))
        flips += bool(out["meta"].get("flipped"))
    assert 0 < flips < 12
    assert sample["image"].shape == (64, 128, 3) and "flipped" not in sample["meta"]  # input untouched


def test_photometric_augmentation_changes_only_the_image() -> None:
    cfg = AugmentConfig(hflip_prob=0, scale_prob=0, color_prob=1, blur_prob=1, noise_prob=1, jpeg_prob=1)
    sample = _blocky_sample()
    out = Augment(cfg, SIZE, seed=1)(sample)
    assert out["image"].dtype == np.uint8 and out["image"].shape == sample["image"].shape
    assert not np.array_equal(out["image"], sample["image"])
    for key in ("segmentation", "drivable", "lanes", "lane_instances", "depth"):
        assert np.array_equal(out[key], sample[key]), key
    same = Augment(cfg, SIZE, seed=1)(sample)
    assert np.array_equal(same["image"], out["image"])  # seeded
    assert np.array_equal(Augment(NO_AUGMENT, SIZE)(sample)["image"], sample["image"])
    with pytest.raises(ConfigError, match="max_scale must be >= 1"):
        AugmentConfig(max_scale=0.8)


def test_hue_shift_rotates_colours() -> None:
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    cfg = AugmentConfig(hflip_prob=0, scale_prob=0, color_prob=1, brightness=0, contrast=0, saturation=0,
                        hue_deg=60, blur_prob=0, noise_prob=0, jpeg_prob=0)
    out = Augment(cfg, (8, 8), seed=0)({"image": red})["image"]
    assert max(out[..., 1].mean(), out[..., 2].mean()) > 20  # red turned orange or magenta
    assert math.isclose(out.astype(float).max(axis=2).mean(), 200, abs_tol=2)  # HSV value kept
