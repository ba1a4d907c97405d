"""The full-model file the default model ships as: ``X.safetensors`` with every weight plus
``X.yaml`` with the config, the tasks added after training, the trunk fingerprint and the
weights' sha256. Nothing here ever unpickles. Task bundles (one task each) are ``bundle.py``.

Example::

    save_model(model, "out/model.safetensors")        # also writes out/model.yaml
    model = load_model("out/model.yaml")              # either file of the pair; eval mode
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from perception import __version__
from perception.config import TaskConfig, from_dict, model_config_from_dict
from perception.errors import CheckpointError, ConfigError
from perception.models.network import BASE_GROUP, MultiTaskNet
from perception.training._artifact import FORMAT_VERSION, is_int, plain, tensor_problems
from perception.training.fingerprint import (
    cpu_copy,
    parse_safetensors,
    refuse_pickle,
    tensor_index,
    trunk_fingerprint,
    write_atomic,
)
from perception.yaml_io import safe_load

__all__ = ["save_model", "load_model", "load_weights", "warm_start"]


def _model_manifest_path(path: Path) -> tuple[Path, Path]:
    if path.suffix in (".yaml", ".yml"):
        return path.with_suffix(".safetensors"), path
    return path, path.with_suffix(".yaml")


def save_model(model: MultiTaskNet, path: str | Path) -> Path:
    """Write the whole model as ``X.safetensors`` plus ``X.yaml`` (config, added tasks, trunk
    fingerprint, weights sha256). LoRA must be unmerged. Returns the weights path.

    Raises:
        BundleError: the model's LoRA is merged.
    """
    from safetensors.torch import save as st_save

    weights, manifest_path = _model_manifest_path(Path(path))
    fp = trunk_fingerprint(model)
    base = [h.cfg for n, h in model.tasks.items() if h.group == BASE_GROUP and not h.is_fusion]
    added = [{"task": plain(asdict(h.cfg)), "own_group": h.group == n, "sources": list(h.sources)}
             for n, h in model.tasks.items() if not (h.group == BASE_GROUP and not h.is_fusion)]
    config = model.cfg.to_dict()
    config["tasks"] = [plain(asdict(t)) for t in base]
    blob = st_save(cpu_copy(model.state_dict()))
    manifest = {"format_version": FORMAT_VERSION, "kind": "tadp_model", "config": config,
                "added_tasks": added, "trunk_fingerprint": fp,
                "weights_sha256": hashlib.sha256(blob).hexdigest(),
                "created_by": f"tad_perception {__version__}"}
    weights.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(weights, blob)  # weights first: the manifest's sha256 then names them
    write_atomic(manifest_path, yaml.safe_dump(manifest, sort_keys=False,
                                                default_flow_style=None, width=100).encode())
    return weights


def load_weights(model: MultiTaskNet, path: str | Path, *, sha256: str | None = None) -> None:
    """Copy a full-model safetensors state dict into ``model``; every key must match exactly.

    Raises:
        CheckpointError: pickle file, corrupt file, sha256 mismatch, or keys/shapes that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model weights {str(path)!r} do not exist")
    data = path.read_bytes()
    refuse_pickle(path, data[:16], what="model", fix="save_model() (safetensors)", err_cls=CheckpointError)
    sd, _ = parse_safetensors(data, path, CheckpointError)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"model weights {str(path)!r} do not match the sha256 in their "
                              "manifest; the file was modified or damaged")
    problems = tensor_problems(tensor_index(model.state_dict()), sd)
    if problems:
        raise CheckpointError(f"model weights {str(path)!r} do not fit this model "
                              f"({model.cfg.name}, tasks {model.task_names()}): "
                              + "; ".join(problems))
    model.load_state_dict(sd, strict=True)


def load_model(path: str | Path) -> MultiTaskNet:
    """Build a model from a :func:`save_model` pair (``X.safetensors`` or ``X.yaml``), in eval
    mode. The trunk fingerprint is checked after loading.

    Raises:
        CheckpointError: missing/malformed manifest, bad weights (see :func:`load_weights`).
    """
    weights, manifest_path = _model_manifest_path(Path(path))
    if not manifest_path.is_file():
        raise CheckpointError(f"model manifest {str(manifest_path)!r} does not exist (expected "
                              f"beside {weights.name})")
    try:
        raw = safe_load(manifest_path.read_text())
    except yaml.YAMLError as err:
        raise CheckpointError(f"{manifest_path}: not valid (safe) YAML: {err}") from err
    if not isinstance(raw, Mapping) or raw.get("kind") != "tadp_model":
        raise CheckpointError(f"{manifest_path} is not a tad_perception model manifest")
    version = raw.get("format_version")
    if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{manifest_path}: format_version {version!r} is not supported "
                              f"(this tool reads 1..{FORMAT_VERSION}); upgrade tad_perception")
    try:
        cfg = model_config_from_dict(raw.get("config"), where=str(manifest_path))
        with torch.random.fork_rng(devices=[]):
            model = MultiTaskNet(cfg)
            for i, item in enumerate(raw.get("added_tasks") or []):
                task = from_dict(TaskConfig, item["task"], f"{manifest_path}: added_tasks[{i}]")
                model.add_task(task, own_group=bool(item.get("own_group", True)),
                               sources=tuple(item.get("sources") or ()))
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{manifest_path}: cannot build the model: {err}") from err
    load_weights(model, weights, sha256=raw.get("weights_sha256"))
    if raw.get("trunk_fingerprint") not in (None, trunk_fingerprint(model)):
        raise CheckpointError(f"{weights}: loaded trunk does not match the manifest's fingerprint")
    return model.eval()


def warm_start(source: MultiTaskNet, model: MultiTaskNet) -> dict[str, list[str]]:
    """Copy every tensor of ``source`` that ``model`` has under the same name and shape into
    ``model`` (e.g. continuing a trained model with a changed architecture setting). Returns the
    names ``kept``, ``new`` (left at their initialisation) and ``dropped`` (only in ``source``).

    A decoder's output layer that grew channels (depth's ``subpixel``) is ``grown``: the old
    channels are copied and the new ones start at zero, so the model starts out predicting
    exactly what the source did.

    Raises:
        ConfigError: nothing fits, or the models' task lists differ (a changed architecture,
            not a different model, is what this is for).
    """
    if source.task_names() != model.task_names():
        raise ConfigError(f"warm start needs the same tasks; {source.task_names()} != "
                          f"{model.task_names()}")
    src, dst = source.state_dict(), model.state_dict()
    kept = [k for k, v in dst.items() if k in src and src[k].shape == v.shape]
    if not kept:
        raise ConfigError("warm start: no tensor of the source model fits the new one")
    outputs = tuple(f"tasks.{n}.decoder.{h.decoder.out_layer}." for n, h in model.tasks.items())
    grown = [k for k, v in dst.items() if k.startswith(outputs) and k in src and k not in kept
             and src[k].shape[1:] == v.shape[1:] and src[k].shape[0] < v.shape[0]]
    with torch.no_grad():
        for k in kept:
            dst[k].copy_(src[k])
        for k in grown:
            dst[k].zero_()
            dst[k][: src[k].shape[0]].copy_(src[k])
    fits = set(kept) | set(grown)
    return {"kept": kept, "grown": grown, "new": [k for k in dst if k not in fits],
            "dropped": [k for k in src if k not in fits]}
