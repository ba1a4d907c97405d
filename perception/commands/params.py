"""``tadp params``: total and trainable parameters by component for a config and mode."""
from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="count total/trainable parameters by component",
                       description="Print total and trainable parameters by component.")
    p.add_argument("--config", default="tiny", help="shipped config name or YAML path")
    p.add_argument("--rank", type=int, help="override the shared LoRA rank")
    p.add_argument("--variant", choices=("tadformer", "mtlora", "none"),
                   help="override the adapter variant")
    p.add_argument("--mode", default="base", help="training mode: base|adapter|fusion|decoders|full")
    p.add_argument("--task", help="the task for adapter/fusion modes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.config import load_config
    from perception.models.network import MultiTaskNet
    from perception.training.modes import parameter_report

    cfg = load_config(args.config)
    changes = {}
    if args.rank is not None:
        changes["adapter.rank"] = args.rank
    if args.variant is not None:
        changes["adapter.variant"] = args.variant
    if changes:
        cfg = cfg.replace(**changes)
    report = parameter_report(MultiTaskNet(cfg), args.mode, args.task)
    summary = {
        "config": cfg.name,
        "variant": cfg.adapter.variant,
        "rank": cfg.adapter.rank,
        "mode": args.mode,
        "total": report["all"]["total"],
        "trainable": report["all"]["trainable"],
        "trainable_m": round(report["all"]["trainable"] / 1e6, 3),
        "components": {k: v for k, v in report.items() if k != "all"},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{cfg.name}  variant={cfg.adapter.variant}  rank={cfg.adapter.rank}  mode={args.mode}")
    print(f"{'component':<20}{'total':>14}{'trainable':>14}")
    for name, row in summary["components"].items():
        print(f"{name:<20}{row['total']:>14,}{row['trainable']:>14,}")
    print(f"{'all':<20}{summary['total']:>14,}{summary['trainable']:>14,}"
          f"   ({summary['trainable_m']:.3f} M trainable)")
    return 0
