"""``tadp train`` under ``torchrun`` with two CPU processes (gloo): DistributedSampler shards, DDP
keeps the replicas equal, rank 0 alone validates and writes the run directory. Three steps on
eight 64x128 frames; most of the time is two Python processes importing torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.data.synthetic import SynthConfig, write_dataset
from perception.training.run_dir import load_model_from


@pytest.mark.slow  # ~20 s on 2 busy cores
def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", 8, seed=4, config=SynthConfig(height=64, width=128))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "perception.cli", "train", "--config", "tiny", "--input-size", "64x128",
           "--train", str(data), "--val", str(data), "--max-val-samples", "2", "--max-steps", "3",
           "--batch-size", "2", "--workers", "0", "--threads", "1", "--warmup-steps", "1",
           "--uncertainty", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 3 steps") == 1  # rank 0 only
    settings = json.loads((out / "train.json").read_text())
    # 8 frames over 2 ranks at batch 2: 2 steps per epoch on each rank.
    assert settings["world_size"] == 2 and settings["steps_per_epoch"] == 2
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["steps"]] == [1, 2, 3]
    assert [r["step"] for r in history["epochs"]] == [0, 2, 3]
    assert all(r["val"]["loss"] > 0 for r in history["epochs"])
    assert load_model_from(out).cfg.input_size == (64, 128)
    assert not list(out.glob(".*tmp*")) and not list((out / "checkpoints").glob(".*tmp*"))

