"""``tadp train``: base multi-task training of a config on a dataset (docs/training.md).

Examples::

    tadp train --config tiny --train synth_train --val synth_val --out runs/tiny --epochs 30
    tadp train --config swin-t --swin-weights swin_tiny_patch4_window7_224.pth --train ... --bf16
    tadp train ... --out runs/tiny --resume            # continue from runs/tiny/checkpoints/last
    tadp train ... --max-steps 1000 --stop-at 800      # pause at step 800 of the 1000-step schedule
    torchrun --nproc_per_node 2 -m perception.cli train ...   # DDP (gloo on CPU, nccl on CUDA)

Datasets are ``[KIND:]PATH[,key=value...]`` specs (see ``perception.evaluation.evaluate.open_dataset``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "add_training_args", "apply_overrides", "train_config_from", "setup_runtime",
           "report_pause", "cpu_has_bf16", "warn_slow_bf16"]


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Data, optimisation and run-directory flags shared by ``train`` and ``train-task``."""
    d = p.add_argument_group("data")
    d.add_argument("--train", required=True, metavar="SPEC", help="training dataset ([KIND:]PATH[,k=v...])")
    d.add_argument("--val", metavar="SPEC", help="validation dataset (validated every epoch)")
    d.add_argument("--max-train-samples", type=int, metavar="N", help="use only the first N training samples")
    d.add_argument("--max-val-samples", type=int, metavar="N", help="use only the first N validation samples")
    d.add_argument("--no-augment", action="store_true", help="no augmentation (resize only)")
    d.add_argument("--zoom-prob", type=float, default=0.5, metavar="P",
                   help="probability of the random zoom-and-crop (default 0.5; 0 keeps every "
                        "frame's horizon and focal length as rendered)")
    d.add_argument("--workers", type=int, default=2, help="data-loader processes per rank (default 2)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    o.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (sets the schedule)")
    o.add_argument("--batch-size", type=int, default=8, help="per rank (default 8)")
    o.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    o.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on matrices (0.05)")
    o.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    o.add_argument("--min-lr-ratio", type=float, default=0.01, help="cosine floor as a fraction of --lr")
    o.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0 = off (default 1)")
    o.add_argument("--uncertainty", action="store_true", help="learn task weights (Kendall et al. 2018)")
    o.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast: faster on GPUs and on CPUs with AVX512-BF16 or AMX "
                        "(1.6x per step on a Zen 4 box), several times slower on other CPUs "
                        "(a warning says so)")
    o.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and augmentation")
    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="RUN", help="run directory (config, history, curves, weights)")
    r.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last")
    r.add_argument("--overwrite", action="store_true", help="start again in an existing RUN (removes its run files)")
    r.add_argument("--val-every", type=int, default=1, help="validate every N epochs; 0 = never (default 1)")
    r.add_argument("--val-batch-size", type=int, default=4, help="validation batch size (default 4)")
    r.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="extra checkpoints every STEPS steps (default: at epoch ends only)")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per rank (default: torch's choice; 1 is fastest on a busy machine)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="base multi-task training (AdamW, cosine, checkpoints, torchrun)",
                       description="Train the base tasks of a model config on a dataset.")
    p.add_argument("--config", help="shipped config name or YAML path (default tiny)")
    p.add_argument("--input-size", metavar="HxW", help="override the config's input size (multiples of 32)")
    p.add_argument("--tasks", metavar="A,B", help="train only these tasks of the config (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. adapter.dropout=0.0 or one task's "
                        "tasks.depth.loss_weight=2.0 (repeatable; VALUE is YAML)")
    p.add_argument("--swin-weights", metavar="PATH", help="local Swin checkpoint (timm/official/HF) for the trunk")
    p.add_argument("--init", metavar="MODEL",
                   help="continue training a saved model (a model file such as the shipped default, a run "
                        "directory or a checkpoint directory): its config and all its weights; excludes --config, --input-size, --tasks and --swin-weights. "
                        "With --set, the changed architecture starts from every tensor of MODEL that still fits (by name and shape); the rest is newly initialised")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="pause at this step of the schedule (checkpointed; no model export): a "
                        "time-boxed job, continued later with --resume or used via --init "
                        "RUN/checkpoints/last")
    p.add_argument("--mode", choices=("auto", "base", "full"), default="auto",
                   help="base: the paper's set (LoRA, norms, prompts, branch, decoders) on frozen Swin weights; "
                        "full: everything. auto (default): base with --swin-weights, else full (a random "
                        "Swin trunk must learn)")
    add_training_args(p)
    p.set_defaults(func=run)


def apply_overrides(cfg: Any, items: list[str]) -> Any:
    """``section.key=value`` overrides of a :class:`ModelConfig` (values parsed as YAML).

    Raises:
        ConfigError: malformed item, unknown section or key, or an invalid value.
    """
    import yaml

    from perception.errors import ConfigError

    sections = cfg.to_dict()
    for item in items:
        key, eq, text = item.partition("=")
        section = key.partition(".")[0]
        if not eq or section not in sections or (key == section and isinstance(sections[section], dict)):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of "
                              f"{sorted(k for k, v in sections.items() if isinstance(v, dict))} "
                              "(or name=..., input_size=[H, W], tasks.NAME.KEY=...)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {err}") from err
        cfg = cfg.replace(**{key: value})
    return cfg


def train_config_from(args: argparse.Namespace) -> Any:
    from perception.training.trainer import TrainConfig

    return TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, min_lr_ratio=args.min_lr_ratio,
        grad_clip=args.grad_clip or None, uncertainty=args.uncertainty, bf16=args.bf16,
        augment=not args.no_augment, seed=args.seed, workers=args.workers, val_batch_size=args.val_batch_size,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, progress=not args.no_progress)


def augment_config_from(args: argparse.Namespace) -> Any:
    from perception.data.augment import AugmentConfig

    return AugmentConfig(scale_prob=args.zoom_prob)  # validates: ConfigError outside [0, 1]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles), the case in which
    ``--bf16`` speeds a CPU step up instead of slowing it down."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def warn_slow_bf16(device: str) -> None:
    """Say so on stderr when ``--bf16`` on this device would be emulated (slower, not faster)."""
    if device == "cpu" and not cpu_has_bf16():
        print("warning: --bf16 on a CPU without bfloat16 units (AVX512-BF16 or AMX): autocast "
              "emulates it and steps run several times slower (a Swin-T forward pass: 6-8x on Zen 3); drop "
              "--bf16 here", file=sys.stderr)


def setup_runtime(args: argparse.Namespace) -> Any:
    """Threads, process group and seed; returns the :class:`DistInfo` of this process."""
    import torch

    from perception.errors import ConfigError
    from perception.training.trainer import init_distributed

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device} requested but CUDA is not available; use --device cpu")
    if args.bf16:
        warn_slow_bf16(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    info = init_distributed(args.device)
    torch.manual_seed(args.seed)
    return info


def open_run(args: argparse.Namespace, dist_info: Any) -> Any:
    """The run directory on rank 0, None elsewhere (only rank 0 writes)."""
    from perception.training.run_dir import RunDir

    if not dist_info.main:
        return None
    return RunDir.create(args.out, resume=args.resume, overwrite=args.overwrite)


def open_datasets(args: argparse.Namespace) -> tuple[Any, Any]:
    from perception.evaluation.evaluate import open_dataset

    train = open_dataset(args.train, max_samples=args.max_train_samples)
    val = open_dataset(args.val, max_samples=args.max_val_samples) if args.val else None
    return train, val


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import torch.distributed as dist

    from perception.config import load_config
    from perception.data.synthetic.config import parse_size
    from perception.errors import ConfigError
    from perception.models.checkpoint import load_swin_weights
    from perception.models.network import MultiTaskNet
    from perception.training.camera_reference import record_camera_reference
    from perception.training.model_file import warm_start
    from perception.training.run_dir import load_model_from
    from perception.training.trainer import Trainer

    if args.init:
        clash = [flag for flag, given in (("--config", args.config), ("--input-size", args.input_size),
                                          ("--tasks", args.tasks),
                                          ("--swin-weights", args.swin_weights)) if given]
        if clash:
            raise ConfigError(f"--init takes the config and weights of {args.init!r}; drop {', '.join(clash)}")
    info = setup_runtime(args)
    try:
        warm: dict[str, list[str]] | None = None
        if args.init:
            model = load_model_from(args.init).train()
            cfg = model.cfg
            if args.set:
                cfg = apply_overrides(cfg, args.set)
                source, model = model, MultiTaskNet(cfg).train()
                warm = warm_start(source, model)
                if info.main:
                    print(f"warm start from {args.init}: {len(warm['kept'])} tensors kept, "
                          f"{len(warm['grown'])} grown, {len(warm['new'])} new, "
                          f"{len(warm['dropped'])} dropped")
        else:
            cfg = load_config(args.config or "tiny")
            if args.input_size:
                cfg = cfg.replace(input_size=list(parse_size(args.input_size)))
            cfg = apply_overrides(cfg, args.set)
            if args.tasks:
                keep = [t.strip() for t in args.tasks.split(",") if t.strip()]
                cfg = cfg.replace(tasks=[asdict(cfg.task(t)) for t in keep])
            model = MultiTaskNet(cfg)
        if args.stop_at is not None and args.stop_at < 1:
            raise ConfigError(f"--stop-at {args.stop_at}: must be a step >= 1")
        train_cfg = train_config_from(args)
        augment = augment_config_from(args)  # bad values fail before the run directory exists
        run_dir = open_run(args, info)
        layout = load_swin_weights(model.encoder, args.swin_weights) if args.swin_weights else None
        train_set, val_set = open_datasets(args)
        for line in record_camera_reference(model, train_set):
            if info.main:
                print(line)
        cfg = model.cfg
        mode = args.mode if args.mode != "auto" else ("base" if args.swin_weights else "full")
        trainer = Trainer(model, train_set, val_set, train_cfg, run_dir, mode=mode, device=args.device,
                          augment=augment,
                          dist_info=info)
        if run_dir is not None:
            run_dir.write_config(cfg, {
                "command": "tadp " + " ".join(sys.argv[1:]), "mode": mode,
                "config": args.config or (None if args.init else "tiny"),
                "train": args.train, "val": args.val, "init": args.init, "swin_weights": args.swin_weights, "swin_layout": layout,
                "world_size": info.world, "train_samples": len(train_set), "steps": trainer.total_steps,
                "steps_per_epoch": trainer.steps_per_epoch, "settings": asdict(train_cfg),
                "augment": asdict(augment), "set": args.set,
                "warm_start": None if warm is None else {k: warm[k] for k in ("new", "dropped")}})
        record = trainer.fit(resume_from=args.out if args.resume else None, stop_at=args.stop_at)
        code = report_pause(trainer, args.out, info.main)
        if code is not None:
            return code
        if info.main:
            path = trainer.export(record.get("metrics"))
            print(f"trained {trainer.step} steps; model: {path}; run: {args.out}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def report_pause(trainer: Any, out: str, main: bool) -> int | None:
    """A run that stopped short of its schedule: say where its checkpoint is and return the exit
    code (0 at ``--stop-at``, 128 + the signal's number after SIGTERM or Ctrl-C, as a shell
    reports a killed job, so scripts stop); None when the run finished."""
    import signal

    if trainer.step >= trainer.total_steps:
        return None
    if main:
        why = f" by {trainer.paused_by}" if trainer.paused_by else ""
        print(f"paused at step {trainer.step} of {trainer.total_steps}{why}; checkpoint: "
              f"{out}/checkpoints/last (continue with --resume, or --init it)", flush=True)
    return 128 + signal.Signals[trainer.paused_by].value if trainer.paused_by else 0
