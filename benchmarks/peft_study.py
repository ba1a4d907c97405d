"""PEFT study on our benchmark (issue 5 item 8): which parameters to train, for what accuracy.

Two parts, each a set of real ``tadp`` training runs with one short schedule, run side by side
(``--jobs`` processes of one thread each), then one Markdown table:

* ``base``: the four base tasks trained from one Swin trunk by decoders only, MTLoRA, TADFormer
  (multi-task, one model each) and by four single-task full fine-tunes (the Δm baselines, Eq. 6 of
  the TADFormer paper). The trunk is exported from a trained model (default: the shipped one) as
  a plain Swin checkpoint in timm layout and passed with ``--swin-weights``, the path a user takes
  with an ImageNet checkpoint. No pretrained Swin can be downloaded here, so this trunk has seen
  these tasks: the study ranks the methods on a strong trunk, it does not measure transfer.
* ``corridor``: the new task on the frozen model as a fusion bundle, a TADFormer-branch bundle and
  the whole model fine-tuned on it (``tadp train-task --adapter fusion|tadformer|full``).

Usage::

    python benchmarks/peft_study.py --train data/train --val data/val --out runs/peft
    python benchmarks/peft_study.py ... --part corridor --steps 300 --size 256x512

Prints the commands as it runs them and writes ``OUT/peft_study.md`` (tables + commands) and
``OUT/peft_study.json`` (with each run's wall time: comparable only between runs that shared the
machine alike). A run whose ``metrics.json`` exists is not run again (delete it to redo).
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE_TASKS = ("segmentation", "depth", "drivable", "lanes")
# One primary metric per task for Δm (as the paper does), and the column titles.
PRIMARY = {"segmentation": "segmentation/miou", "depth": "depth/abs_rel",
           "drivable": "drivable/miou", "lanes": "lanes/iou", "corridor": "corridor/miou"}
# The console script, not ``python -m``: `pkill -STOP -f "tadp train"` then pauses the runs
# (quiet timings of other benchmarks on the same machine).
TADP = shutil.which("tadp") or "tadp"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "perception" / "assets" / "default" / "model.safetensors"


@dataclass
class Run:
    name: str
    method: str
    argv: list[str]
    mode: str  # training mode whose parameters count as trainable
    task: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    trainable: int = 0
    seconds: float = 0.0


def export_trunk(model_path: Path, out: Path) -> Path:
    """The model's Swin as a plain timm-layout checkpoint: shared LoRA folded in where exact,
    the rest of it dropped (PEFT runs start their own adapters from zero)."""
    from safetensors.torch import save_file

    from perception.models.checkpoint import load_swin_weights
    from perception.models.network import MultiTaskNet
    from perception.training.model_file import load_model

    model = load_model(model_path)
    model.merge_lora()
    state = {k: v.detach().contiguous() for k, v in model.encoder.state_dict().items()
             if ".lora_" not in k and not k.endswith(("relative_position_index", "attn_mask"))}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    load_swin_weights(MultiTaskNet(model.cfg).encoder, out)  # refuses a checkpoint it cannot take
    return out


def base_runs(a: argparse.Namespace, trunk: Path) -> list[Run]:
    common = ["--config", "tiny", "--input-size", a.size, "--swin-weights", str(trunk)]
    runs = [
        Run("decoders", "decoders only", ["train", *common, *_schedule(a), "--set", "adapter.variant=none"],
            "base"),
        Run("mtlora", "MTLoRA", ["train", *common, *_schedule(a), "--set", "adapter.variant=mtlora"], "base"),
        Run("tadformer", "TADFormer (ours)", ["train", *common, *_schedule(a)], "base"),
    ]
    for t in BASE_TASKS:
        runs.append(Run(f"single_{t}", f"single-task full FT: {t}",
                        ["train", *common, *_schedule(a, a.full_lr), "--tasks", t, "--mode", "full"],
                        "full", task=t))
    return runs


def corridor_runs(a: argparse.Namespace) -> list[Run]:
    common = ["train-task", "--base", str(a.model), "--name", "corridor", "--kind", "mask"]
    return [
        Run("corridor_fusion", "fusion bundle", [*common, *_schedule(a), "--adapter", "fusion"],
            "fusion", task="corridor"),
        Run("corridor_tadformer", "TADFormer-branch bundle",
            [*common, *_schedule(a), "--adapter", "tadformer"], "adapter", task="corridor"),
        Run("corridor_full", "full fine-tuning",
            [*common, *_schedule(a, a.full_lr), "--adapter", "full"], "full", task="corridor"),
    ]


def _schedule(a: argparse.Namespace, lr: float | None = None) -> list[str]:
    return ["--train", a.train, "--val", a.val, "--max-val-samples", str(a.val_samples),
            "--max-steps", str(a.steps), "--batch-size", str(a.batch_size), "--lr", str(lr or a.lr),
            "--warmup-steps", str(a.warmup), "--seed", str(a.seed), "--threads", "1",
            "--workers", "1", "--no-progress"]


def execute(run: Run, out: Path) -> Run:
    run_dir = out / run.name
    argv = [*run.argv, "--out", str(run_dir)]
    done = run_dir / "metrics.json"
    if not done.is_file():
        if run_dir.exists():
            argv.append("--overwrite")
        print("$ tadp " + shlex.join(argv), flush=True)
        t0 = time.perf_counter()
        with open(out / f"{run.name}.log", "w") as log:
            subprocess.run([TADP, *argv], check=True, stdout=log, stderr=subprocess.STDOUT)
        (run_dir / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    run.seconds = float((run_dir / "wall_s.txt").read_text()) if (run_dir / "wall_s.txt").is_file() else 0.0
    run.metrics = json.loads(done.read_text())
    run.trainable = _trainable(run, run_dir)
    return run


def _trainable(run: Run, run_dir: Path) -> int:
    from perception.training.model_file import load_model
    from perception.training.modes import trainable_names
    from perception.training.run_dir import load_model_from

    if run.mode in ("adapter", "fusion"):
        from perception.training.bundle import load_bundle_into, read_bundle

        model = load_model(run.argv[run.argv.index("--base") + 1])
        load_bundle_into(model, read_bundle(run_dir / f"{run.task}.tadtask"))
    else:
        model = load_model_from(run_dir / "model.safetensors")
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in trainable_names(model, run.mode, run.task))


def _fmt(key: str, value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}" if "abs_rel" in key else f"{value:.3f}"


def base_table(runs: list[Run]) -> str:
    from perception.evaluation.metrics.multitask import delta_m

    single = {r.task: r for r in runs if r.task}
    baselines = {PRIMARY[t]: single[t].metrics[PRIMARY[t]] for t in BASE_TASKS}
    lines = ["| method | " + " | ".join(PRIMARY[t] for t in BASE_TASKS) + " | Δm (%) | trainable |",
             "|---|" + "---|" * (len(BASE_TASKS) + 2)]
    for r in runs:
        if r.task:
            continue
        res = {PRIMARY[t]: r.metrics[PRIMARY[t]] for t in BASE_TASKS}
        lines.append(f"| {r.method} | " + " | ".join(_fmt(k, v) for k, v in res.items())
                     + f" | {delta_m(res, baselines):+.1f} | {r.trainable:,} |")
    total = sum(single[t].trainable for t in BASE_TASKS)
    lines.append("| single-task full FT (4 models) | " + " | ".join(
        _fmt(PRIMARY[t], baselines[PRIMARY[t]]) for t in BASE_TASKS) + f" | 0 (baseline) | {total:,} |")
    return "\n".join(lines)


def corridor_table(runs: list[Run], trunk_params: int) -> str:
    lines = ["| method | corridor mIoU | corridor IoU | trainable | % of trunk |", "|---|---|---|---|---|"]
    for r in runs:
        iou = r.metrics.get("corridor/iou/foreground")
        lines.append(f"| {r.method} | {_fmt('', r.metrics.get('corridor/miou'))} | {_fmt('', iou)} | "
                     f"{r.trainable:,} | {100 * r.trainable / trunk_params:.2f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="trained model (trunk + corridor base)")
    p.add_argument("--part", choices=("base", "corridor", "all"), default="all")
    p.add_argument("--size", default="128x256", help="input size of the base-task runs")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="peak LR of the adapter/decoder runs")
    p.add_argument("--full-lr", type=float, default=2e-4, help="peak LR of the full fine-tunes")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--val-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    a.model = a.model.resolve()
    runs: list[Run] = []
    if a.part in ("base", "all"):
        runs += base_runs(a, export_trunk(a.model, a.out / "trunk_swin.safetensors"))
    if a.part in ("corridor", "all"):
        runs += corridor_runs(a)
    with ThreadPoolExecutor(a.jobs) as pool:
        done = list(pool.map(lambda r: execute(r, a.out), runs))
    from perception.training.model_file import load_model

    trunk_params = sum(p.numel() for n, p in load_model(a.model).named_parameters() if n.startswith("encoder."))
    parts = []
    base = [r for r in done if not r.name.startswith("corridor")]
    if base:
        parts.append(f"## Base tasks ({a.size}, {a.steps} steps, batch {a.batch_size})\n\n" + base_table(base))
    corr = [r for r in done if r.name.startswith("corridor")]
    if corr:
        parts.append(f"## corridor on the frozen model ({a.steps} steps, batch {a.batch_size}; trunk "
                     f"{trunk_params:,} parameters)\n\n" + corridor_table(corr, trunk_params))
    parts.append("## Commands\n\n```\n" + "\n".join(
        "tadp " + shlex.join([*r.argv, "--out", str(a.out / r.name)]) for r in done) + "\n```")
    text = "\n\n".join(parts) + "\n"
    (a.out / "peft_study.md").write_text(text)
    (a.out / "peft_study.json").write_text(json.dumps(
        [{"name": r.name, "method": r.method, "metrics": r.metrics, "trainable": r.trainable,
          "seconds": r.seconds} for r in done], indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
