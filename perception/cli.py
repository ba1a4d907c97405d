"""The ``tadp`` command: one entry point, one module per sub-command in ``perception.commands``.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=callable(args) -> int``. Commands import heavy libraries (torch, cv2) inside their
handlers so ``tadp --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from perception.errors import PerceptionError

__all__ = ["main", "build_parser"]

# One line per sub-command module; order is the order in ``tadp --help``.
_COMMANDS: tuple[str, ...] = (
    "perception.commands.params",
    "perception.commands.benchmark",
    "perception.commands.build_engine",
    "perception.commands.calibrate",
    "perception.commands.synth",
    "perception.commands.bundle",
    "perception.commands.train",
    "perception.commands.train_task",
    "perception.commands.export_model",
    "perception.commands.eval",
    "ros2_nodes.command",
    "perception.commands.replay",
    "perception.commands.bag_from_images",
    "perception.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tadp",
        description="tad_perception: multi-task driving perception (Swin + TADFormer adapters).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tadp``; errors of ours print one clear line and exit 2, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PerceptionError as err:
        print(f"tadp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tadp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
