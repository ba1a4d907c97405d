"""``tadp bundle``: look into task bundles and check them against a model (docs/bundles.md).

Examples::

    tadp bundle inspect out/corridor.tadtask
    tadp bundle verify out/corridor.tadtask                 # against the shipped default model
    tadp bundle verify out/corridor.tadtask --weights model.safetensors
    tadp bundle verify out/corridor.tadtask --config tiny   # structure only

``inspect`` reads and integrity-checks the bundle (schema, sha256, tensor index) and prints its
manifest. ``verify`` also builds the model and checks that the bundle fits it: trunk and source
fingerprints, the adapter type and every tensor's shape. The model is ``--weights`` (built from
its own manifest unless ``--config`` names another), or the shipped default model when neither
flag is given, as everywhere else. ``--config`` alone builds a model with random weights: only
the structure is checked then. Both exit 0 when all is well and 2 with the reasons.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="inspect or verify a task bundle",
                       description="Inspect or verify a task bundle "
                                   "(<name>.tadtask directory or .safetensors file).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ins = actions.add_parser("inspect", help="print a bundle's manifest summary",
                             description="Read, integrity-check and summarise a bundle.")
    ins.add_argument("path", type=Path, metavar="PATH", help="bundle directory or file")
    ins.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    ins.set_defaults(func=run_inspect)
    ver = actions.add_parser("verify", help="check that a bundle fits a model",
                             description="Check that a bundle loads into a model: the saved model "
                                         "--weights (built from its own manifest) or a model built "
                                         "from --config: fingerprints, adapter, shapes.")
    ver.add_argument("path", type=Path, metavar="PATH", help="bundle directory or file")
    ver.add_argument("--config", help="shipped config name or YAML path (default: the --weights "
                                      "model's own config, else tiny)")
    ver.add_argument("--weights", type=Path, metavar="MODEL.safetensors",
                     help="full-model weights (save_model; default: the shipped default model "
                          "unless --config is given, which checks structure only)")
    ver.set_defaults(func=run_verify)


def run_inspect(args: argparse.Namespace) -> int:
    from perception.training.bundle import read_bundle

    bundle = read_bundle(args.path)
    m = bundle.manifest
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    layout = "directory" if args.path.is_dir() else "single file"
    rows = [
        ("bundle", f"{args.path} ({layout}, format {m.format_version}, {m.created_by})"),
        ("task", f"{m.name}  kind={m.kind}  adapter={m.adapter}  output={m.output_type}"),
        ("trained on", f"model {m.model.get('name')!r}  rank={m.rank}  "
                       f"input={m.input_size[0]}x{m.input_size[1]}"),
        ("classes", ", ".join(m.class_names) or "-"),
        ("params", f"{m.num_params:,} in {len(m.tensors)} tensors"),
        ("trunk fp", m.trunk_fingerprint),
        ("task fp", m.task_fingerprint),
    ]
    rows += [("source fp", f"{s}: {m.source_fingerprints[s]}") for s in m.sources]
    rows.append(("metrics", "  ".join(f"{k}={_fmt(v)}" for k, v in m.metrics.items()) or "-"))
    for key, value in rows:
        print(f"{key:<18}{value}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    import torch

    from perception.config import load_config
    from perception.errors import ConfigError
    from perception.models.network import MultiTaskNet
    from perception.runtime.default_model import DEFAULT_MODEL, default_model_path
    from perception.training.bundle import bundle_problems, read_bundle
    from perception.training.model_file import load_model, load_weights

    bundle = read_bundle(args.path)
    if args.weights is None and args.config is None:
        args.weights = default_model_path()
        if args.weights is None:
            raise ConfigError(f"no --weights given and the shipped default model {DEFAULT_MODEL} "
                              "is missing; pass --weights MODEL, or --config NAME for a "
                              "structure-only check")
    if args.weights is not None and args.config is None:
        model = load_model(args.weights)
    else:
        with torch.random.fork_rng(devices=[]):
            model = MultiTaskNet(load_config(args.config or "tiny")).eval()
        if args.weights is not None:
            load_weights(model, args.weights)
    cfg = model.cfg
    problems = bundle_problems(bundle, model, check_fingerprints=args.weights is not None)
    if problems:
        count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
        print(f"tadp bundle verify: {args.path} does not fit model {cfg.name!r} ({count}):",
              file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    checked = (f"trunk and source fingerprints of {args.weights}, " if args.weights is not None
               else "structure only (--config without --weights: fingerprints not checked), ")
    print(f"OK: {bundle.name} ({bundle.manifest.adapter}) fits model {cfg.name!r}: {checked}"
          f"{len(bundle.tensors)} tensors")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
