"""``tadp train-task``: train one new task on a frozen base model and export it as a task bundle.

``--adapter tadformer`` gives the task its own prompt, its own branch group (DTFs, gates, prompt
up-projections; warm-started from the base group) and decoder; ``--adapter fusion`` learns
AdapterFusion over existing tasks (``--sources``) plus a decoder. Everything else is frozen, and
this is proved, not assumed: sha256 of every tensor before and after training must match outside
the new task, or the command fails (``FreezeError``) and writes no bundle.

``--adapter full`` is the baseline the bundles are measured against (``docs/peft_study.md``): the
task is added as with ``tadformer`` and then *every* weight trains on its loss alone. That changes
the trunk and the other tasks, so it writes a whole model (``RUN/model.safetensors``), never a bundle.

Examples::

    tadp train-task --base runs/tiny --name corridor --kind mask --adapter tadformer \\
        --train synth_train --val synth_val --out runs/corridor --epochs 5
    tadp train-task --base runs/tiny/model.safetensors --name corridor_fused --kind mask \\
        --adapter fusion --sources segmentation,drivable,lanes --train ... --out runs/fused
"""
from __future__ import annotations

import argparse
import sys

from perception.commands.train import (
    add_training_args,
    augment_config_from,
    open_datasets,
    open_run,
    report_pause,
    setup_runtime,
    train_config_from,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-task", help="train one new task (TADFormer adapter or fusion) on a frozen model",
                       description="Add a task to a trained model, train only that task (freeze proved "
                                   "by checksums) and write its task bundle.")
    t = p.add_argument_group("task")
    t.add_argument("--base", required=True, metavar="MODEL",
                   help="base model: a `tadp train` run directory, a save_model .safetensors, or a checkpoint dir")
    t.add_argument("--name", required=True, help="new task name (e.g. corridor)")
    t.add_argument("--kind", required=True, help="task kind (e.g. mask, segmentation, depth)")
    t.add_argument("--num-classes", type=int, help="output classes (kinds without a default)")
    t.add_argument("--class-names", metavar="A,B", help="class names, comma-separated")
    t.add_argument("--loss-weight", type=float, default=1.0, help="loss weight (default 1)")
    t.add_argument("--max-depth-m", type=float, default=80.0, help="depth kinds: clamp in metres")
    t.add_argument("--adapter", choices=("tadformer", "fusion", "full"), default="tadformer",
                   help="tadformer: own prompt + branch + decoder; fusion: AdapterFusion over --sources; "
                        "full: fine-tune the whole model on this task (a baseline: writes a model, "
                        "not a bundle)")
    t.add_argument("--sources", metavar="A,B", help="fusion: tasks to fuse (default: every base task)")
    add_training_args(p)
    p.set_defaults(func=run)


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from perception.config import TaskConfig
    from perception.errors import ConfigError
    from perception.models.network import BASE_GROUP
    from perception.training.bundle import save_bundle
    from perception.training.camera_reference import record_camera_reference
    from perception.training.freeze import FreezeGuard
    from perception.training.run_dir import load_model_from, write_json
    from perception.training.trainer import Trainer

    info = setup_runtime(args)
    try:
        model = load_model_from(args.base)
        names = _split(args.class_names)
        task = TaskConfig(name=args.name, kind=args.kind, num_classes=args.num_classes or (len(names) or None),
                          class_names=names, loss_weight=args.loss_weight, max_depth_m=args.max_depth_m)
        sources: tuple[str, ...] = ()
        if args.adapter == "fusion":
            sources = _split(args.sources) or tuple(
                n for n, h in model.tasks.items() if h.group == BASE_GROUP and not h.is_fusion)
        elif args.sources:
            raise ConfigError("--sources is only for --adapter fusion")
        train_cfg = train_config_from(args)
        augment = augment_config_from(args)  # bad values fail before the run directory exists
        run_dir = open_run(args, info)
        guard = FreezeGuard(model, task.name)  # before add_task: adding must not touch anything either
        model.add_task(task, own_group=True, sources=sources)
        mode = "full" if args.adapter == "full" else "fusion" if sources else "adapter"
        train_set, val_set = open_datasets(args)
        for line in record_camera_reference(model, train_set, [task.name]):
            if info.main:
                print(line)
        task = model.tasks[task.name].cfg
        trainer = Trainer(model, train_set, val_set, train_cfg, run_dir, mode=mode, task=task.name,
                          augment=augment,
                          device=args.device, dist_info=info)
        if mode != "full":
            guard.check_trainable()
        if run_dir is not None:
            from dataclasses import asdict

            run_dir.write_config(model.cfg, {
                "command": "tadp " + " ".join(sys.argv[1:]), "mode": mode, "task": asdict(task),
                "sources": list(sources), "base": args.base, "train": args.train, "val": args.val,
                "world_size": info.world, "train_samples": len(train_set), "steps": trainer.total_steps,
                "settings": asdict(train_cfg), "augment": asdict(augment)})
        record = trainer.fit(resume_from=args.out if args.resume else None)
        code = report_pause(trainer, args.out, info.main)
        if code is not None:
            return code
        if mode == "full":
            if info.main:
                path = trainer.export(record.get("metrics"))
                print(f"fine-tuned the whole model on {task.name!r} for {trainer.step} steps "
                      f"(baseline; no bundle): {path}")
            return 0
        proof = guard.check()  # raises FreezeError: no bundle is written then
        if run_dir is not None:
            write_json(run_dir.path / "freeze.json", {"task": task.name, "mode": mode, **proof,
                                                      "trained": sorted(trainer.trainable)})
            if record.get("metrics") is not None:
                write_json(run_dir.path / "metrics.json", record["metrics"])
            path = save_bundle(model, task.name, run_dir.path, metrics=record.get("metrics"), overwrite=True)
            print(f"trained {task.name!r} ({mode}) for {trainer.step} steps; freeze verified on "
                  f"{proof['frozen_tensors']} tensors; bundle: {path}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
