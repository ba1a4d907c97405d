"""Task bundles, the unit of hot-loading (DESIGN §3). Nothing here ever unpickles: weights are
safetensors, manifests YAML/JSON. The full-model file the default model ships as is
``model_file.py``.

A bundle is a directory ``<name>.tadtask/`` holding ``manifest.yaml`` and ``weights.safetensors``
(or one ``.safetensors`` file whose metadata carries the manifest as JSON). It holds only the
task's own tensors - ``tasks.<name>.*`` and, for a TADFormer task, its branch group
``groups.<name>.*`` - never the trunk; the manifest pins the trunk (and, for a fusion task, the
source tasks) by fingerprint. See ``docs/bundles.md``.

Example::

    save_bundle(model, "corridor", "out/", metrics={"corridor/iou": 0.81})
    bundle = read_bundle("out/corridor.tadtask")      # integrity: schema, sha256, index
    load_bundle_into(engine_model, bundle)            # verifies fit first; rolls back on failure
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from perception.config import (
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    TaskConfig,
)
from perception.errors import BundleError, PerceptionError
from perception.models.network import BASE_GROUP, MultiTaskNet, TaskHead
from perception.models.tadformer import BranchParams
from perception.tasks import TASK_KINDS
from perception.training._artifact import (
    FORMAT_VERSION,
    counted,
    plain,
    shortened,
    tensor_problems,
)

# Re-exported from their old home: perception.runtime and commands/train.py import them from here.
from perception.training.bundle_manifest import ADAPTERS, BundleManifest, parse_manifest
from perception.training.fingerprint import (
    PICKLE_SUFFIXES,
    cpu_copy,
    dtype_name,
    fingerprint_of,
    parse_safetensors,
    refuse_pickle,
    task_fingerprint,
    task_tensors,
    tensor_index,
    trunk_fingerprint,
    write_atomic,
)
from perception.training.model_file import load_model, load_weights, save_model
from perception.yaml_io import safe_load

__all__ = ["FORMAT_VERSION", "ADAPTERS", "BundleManifest", "Bundle", "export_bundle",
           "save_bundle", "write_bundle", "read_bundle", "bundle_problems", "verify_bundle",
           "load_bundle_into", "save_model", "load_model", "load_weights"]

BUNDLE_SUFFIX = ".tadtask"
MANIFEST_NAME = "manifest.yaml"
WEIGHTS_NAME = "weights.safetensors"
METADATA_KEY = "tadp_bundle_manifest"  # single-file variant: manifest JSON in the metadata
_ADAPTER_OF_VARIANT = {"tadformer": "tadformer", "mtlora": "mtlora", "none": "decoder"}


@dataclass
class Bundle:
    """A manifest and its tensors (full model names), as read or about to be written."""

    manifest: BundleManifest
    tensors: dict[str, torch.Tensor]
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def where(self) -> str:
        return f"bundle {str(self.path)!r}" if self.path else f"bundle {self.name!r}"


def _adapter_of(model: MultiTaskNet, name: str) -> str:
    head = model.tasks[name]
    if head.is_fusion:
        return "fusion"
    if model.variant == "tadformer" and head.group != name:
        raise BundleError(
            f"task {name!r} runs on the shared {BASE_GROUP!r} branch group, which belongs to the "
            "base model: base tasks ship with the model (save_model), not as bundles. Add the "
            "task with add_task(cfg, own_group=True) and train it in 'adapter' mode to bundle it")
    return _ADAPTER_OF_VARIANT[model.variant]


def _colors(cfg: TaskConfig) -> tuple[list[str], list[list[int]], str]:
    kind = TASK_KINDS.get(cfg.kind)
    names = list(kind.class_names(cfg))
    if kind.output_type != "ids":
        return names, [], kind.output_type
    ids = np.arange(len(names), dtype=np.uint8).reshape(1, -1)
    return names, kind.colorize(ids, cfg).reshape(-1, 3).astype(int).tolist(), kind.output_type


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if hasattr(value, "item"):  # numpy / torch scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # undefined metric (docs/metrics.md): null, never NaN
        if not (isinstance(value, (int, float, str, bool)) or value is None):
            raise BundleError(f"metric {key!r} = {value!r} is not a number, string or None")
        out[str(key)] = value
    return out


def export_bundle(model: MultiTaskNet, name: str, metrics: Mapping[str, Any] | None = None,
                  *, trunk_fp: str | None = None) -> Bundle:
    """Build the bundle of one task in memory (nothing is written; the model is not modified).

    Raises:
        BundleError: unknown task, a TADFormer task on the shared base group, bad metrics, or
            merged LoRA without ``trunk_fp``.
    """
    if name not in model.tasks:
        raise BundleError(f"no task {name!r} to bundle; tasks: {model.task_names()}")
    adapter, head = _adapter_of(model, name), model.tasks[name]
    tensors = cpu_copy(task_tensors(model, name))
    class_names, colors, output_type = _colors(head.cfg)
    cfg = model.cfg
    manifest = BundleManifest(
        name=name, kind=head.cfg.kind, adapter=adapter, task=head.cfg,
        class_names=tuple(class_names), colors_bgr=tuple(tuple(c) for c in colors),
        output_type=output_type, rank=cfg.adapter.rank, input_size=cfg.input_size,
        model={"name": cfg.name, **{k: plain(asdict(getattr(cfg, k)))
                                    for k in ("encoder", "adapter", "decoder")}},
        sources=head.sources, trunk_fingerprint=trunk_fp or trunk_fingerprint(model),
        task_fingerprint="", tensors={},
        source_fingerprints={s: task_fingerprint(model, s, branch_only=True) for s in head.sources},
        num_params=0, metrics=_clean_metrics(metrics))
    return _sealed(Bundle(manifest, tensors))


def _sealed(bundle: Bundle, weights_sha256: str | None = None) -> Bundle:
    """Recompute the tensor index, parameter count and task fingerprint from the tensors."""
    m = bundle.manifest
    group = m.name if m.adapter == "tadformer" else None
    index = {k: {"shape": list(t.shape), "dtype": dtype_name(t.dtype)}
             for k, t in sorted(bundle.tensors.items())}
    params = sum(t.numel() for k, t in bundle.tensors.items() if t.is_floating_point()
                 and not k.endswith(("running_mean", "running_var")))
    fp = fingerprint_of(bundle.tensors, m.name, group, sources=m.sources)
    manifest = replace(m, tensors=index, num_params=params, task_fingerprint=fp,
                       weights_sha256=weights_sha256)
    return Bundle(manifest, bundle.tensors, bundle.path)


def _refuse_pickle(path: Path, head: bytes) -> None:
    refuse_pickle(path, head, what="bundle", fix="save_bundle() (safetensors)", err_cls=BundleError)


def _bundle_target(path: str | Path, name: str) -> Path:
    path = Path(path)
    if path.suffix in (BUNDLE_SUFFIX, ".safetensors"):
        return path
    return path / f"{name}{BUNDLE_SUFFIX}"


def write_bundle(bundle: Bundle, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write (and re-seal) a bundle atomically: to a temporary sibling, then one rename.

    ``path`` ending in ``.tadtask`` is the bundle directory, ending in ``.safetensors`` the
    single-file variant; anything else is a parent directory that gets ``<name>.tadtask``.
    Index, parameter count, task fingerprint and weights sha256 are recomputed from the tensors
    (so editing ``metrics`` of a read bundle and writing it back is fine).

    Raises:
        BundleError: the target exists and ``overwrite`` is False.
    """
    from safetensors.torch import save as st_save

    target = _bundle_target(path, bundle.name)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = cpu_copy(bundle.tensors)
    if target.suffix == ".safetensors":
        manifest = _sealed(Bundle(bundle.manifest, tensors)).manifest
        write_atomic(target, st_save(tensors, metadata={
            METADATA_KEY: json.dumps(manifest.to_dict())}))
        return target
    blob = st_save(tensors)
    manifest = _sealed(Bundle(bundle.manifest, tensors), hashlib.sha256(blob).hexdigest()).manifest
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_dir.chmod(0o755)  # mkdtemp makes it 0700; the node may run as another user
    old = None
    try:
        (tmp_dir / WEIGHTS_NAME).write_bytes(blob)
        (tmp_dir / MANIFEST_NAME).write_text(
            "# tad_perception task bundle; see docs/bundles.md\n"
            + yaml.safe_dump(manifest.to_dict(), sort_keys=False, default_flow_style=None,
                             width=100))
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
        os.rename(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if old is not None and not target.exists():
            os.rename(old, target)
        raise
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return target


def save_bundle(model: MultiTaskNet, task_name: str, path: str | Path,
                metrics: Mapping[str, Any] | None = None, *, overwrite: bool = False,
                trunk_fp: str | None = None) -> Path:
    """Export one task of ``model`` as a bundle (only its tensors, never the trunk).

    Returns the bundle path. See :func:`write_bundle` for how ``path`` is interpreted.

    Raises:
        BundleError: see :func:`export_bundle` and :func:`write_bundle`.
    """
    return write_bundle(export_bundle(model, task_name, metrics, trunk_fp=trunk_fp), path,
                        overwrite=overwrite)


def read_bundle(path: str | Path) -> Bundle:
    """Read and integrity-check a bundle (directory or single file); never unpickles.

    Checks, in order: layout, pickle signatures, safetensors parse ("corrupt"), manifest schema
    and format version, weights sha256 (directory), the tensor index against the file, and the
    task fingerprint against the tensors. Whether it fits a model is :func:`verify_bundle`.

    Raises:
        BundleError: with a message naming exactly what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle {str(path)!r} does not exist")
    where = f"bundle {str(path)!r}"
    if path.is_dir():
        weights, manifest_path = path / WEIGHTS_NAME, path / MANIFEST_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
            if pickles:
                _refuse_pickle(path / pickles[0], b"")
            raise BundleError(f"{where} has no {WEIGHTS_NAME}")
        if not manifest_path.is_file():
            raise BundleError(f"{where} has no {MANIFEST_NAME}")
        data = weights.read_bytes()
        _refuse_pickle(weights, data[:16])
        tensors, _ = parse_safetensors(data, weights, BundleError)
        try:
            raw = safe_load(manifest_path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise BundleError(f"{where}: {MANIFEST_NAME} is not valid (safe) YAML: {err}") from err
        manifest = parse_manifest(raw, where)
        sha = hashlib.sha256(data).hexdigest()
        if manifest.weights_sha256 is None:
            raise BundleError(f"{where}: manifest has no weights_sha256 (a directory bundle "
                              "needs it)")
        if sha != manifest.weights_sha256:
            raise BundleError(f"{where}: {WEIGHTS_NAME} sha256 {sha[:16]}... does not match the "
                              f"manifest's {manifest.weights_sha256[:16]}...; the file was "
                              "modified or damaged after export")
    else:
        with path.open("rb") as f:
            head = f.read(16)
        _refuse_pickle(path, head)
        if path.suffix != ".safetensors":
            raise BundleError(f"{where} is neither a <name>{BUNDLE_SUFFIX} directory nor a "
                              ".safetensors single-file bundle")
        tensors, metadata = parse_safetensors(path.read_bytes(), path, BundleError)
        if METADATA_KEY not in metadata:
            raise BundleError(f"{where} is a safetensors file without a bundle manifest "
                              f"(metadata key {METADATA_KEY!r}); is it a full model file?")
        try:
            raw = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise BundleError(f"{where}: embedded manifest is not valid JSON: {err}") from err
        manifest = parse_manifest(raw, where)
    _check_index(manifest, tensors, where)
    group = manifest.name if manifest.adapter == "tadformer" else None
    if fingerprint_of(tensors, manifest.name, group, sources=manifest.sources) \
            != manifest.task_fingerprint:
        raise BundleError(f"{where}: the weights do not match the manifest's task_fingerprint; "
                          "the file was modified or damaged after export")
    return Bundle(manifest, tensors, path)


def _check_index(manifest: BundleManifest, tensors: Mapping[str, torch.Tensor], where: str
                 ) -> None:
    index = manifest.tensors
    problems = []
    if missing := sorted(set(index) - set(tensors)):
        problems.append(f"missing from the weights file: {shortened(missing)}")
    if extra := sorted(set(tensors) - set(index)):
        problems.append(f"in the weights file but not the manifest: {shortened(extra)}")
    diff = [f"{k}: manifest {index[k]['shape']} {index[k]['dtype']} vs file "
            f"{list(tensors[k].shape)} {dtype_name(tensors[k].dtype)}"
            for k in sorted(set(index) & set(tensors))
            if index[k] != {"shape": list(tensors[k].shape), "dtype": dtype_name(tensors[k].dtype)}]
    if diff:
        problems.append(f"shape/dtype differ: {shortened(diff)}")
    if problems:
        raise BundleError(f"{where}: tensor index does not match the weights: "
                          + "; ".join(problems))


# -- does it fit this model? ---------------------------------------------------------------------
def _expected_tensors(model: MultiTaskNet, m: BundleManifest) -> dict[str, tuple[list[int], str]]:
    """{key: (shape, dtype)} of a freshly built head (and group) for this manifest's task.

    Cached by everything the layout depends on: building the throw-away head costs ~5 ms of
    every hot add."""
    key = (repr(model.cfg), repr(m.task), m.name, m.adapter, tuple(m.sources))
    if key not in _EXPECTED:
        if len(_EXPECTED) >= 64:
            _EXPECTED.clear()
        _EXPECTED[key] = _build_expected(model, m)
    return _EXPECTED[key]


_EXPECTED: dict[tuple, dict[str, tuple[list[int], str]]] = {}


def _build_expected(model: MultiTaskNet, m: BundleManifest) -> dict[str, tuple[list[int], str]]:
    with torch.random.fork_rng(devices=[]):  # do not advance the caller's RNG
        head = TaskHead(m.task, model.cfg, group=m.name if m.adapter == "tadformer" else BASE_GROUP,
                        sources=m.sources)
        state = {f"tasks.{m.name}.{k}": v for k, v in head.state_dict().items()}
        if m.adapter == "tadformer":
            group = BranchParams(model.cfg.encoder, model.cfg.adapter)
            state.update({f"groups.{m.name}.{k}": v for k, v in group.state_dict().items()})
    return tensor_index(state)


def _config_diffs(m: BundleManifest, cfg: ModelConfig) -> list[str]:
    """Settings that change what the bundle computes; training-only ones are ignored."""
    per_adapter = {"tadformer": ["dtf_kernel"], "mtlora": ["task_rank"],
                   "fusion": ["fusion_key_dim"]}.get(m.adapter, [])
    keys = {"encoder": [f for f in EncoderConfig.__dataclass_fields__ if f != "drop_path_rate"],
            "adapter": ["variant", "rank", "scale", *per_adapter],
            "decoder": list(DecoderConfig.__dataclass_fields__)}
    out = []
    for section, names in keys.items():
        mine, theirs = plain(asdict(getattr(cfg, section))), m.model.get(section) or {}
        out += [f"{section}.{k}: bundle {theirs.get(k)!r} vs model {mine[k]!r}"
                for k in names if k in theirs and theirs[k] != mine[k]]
    return out


def bundle_problems(bundle: Bundle, model: MultiTaskNet, *, trunk_fp: str | None = None,
                    check_fingerprints: bool = True) -> list[str]:
    """Everything that stops ``bundle`` from loading into ``model``; [] when it fits.

    ``trunk_fp`` is a trunk fingerprint computed earlier (needed when the model's LoRA is
    merged). ``check_fingerprints=False`` checks structure only (a model with untrained weights).
    Never modifies the model.
    """
    m, problems = bundle.manifest, []
    if m.kind not in TASK_KINDS:
        problems.append(f"task kind {m.kind!r} is unknown here; known: {TASK_KINDS.names()}")
    if m.name in model.tasks:
        problems.append(f"a task named {m.name!r} is already loaded; remove it first "
                        "(model.remove_task) to replace it")
    elif m.name == BASE_GROUP or m.name in model.groups:
        problems.append(f"the name {m.name!r} is taken by a branch group of this model")
    want = _ADAPTER_OF_VARIANT[model.variant]
    if m.adapter not in (want, "fusion"):
        problems.append(f"a {m.adapter!r} bundle cannot run on this {model.variant!r} model "
                        f"(it takes {want!r} and 'fusion' bundles)")
    if diffs := _config_diffs(m, model.cfg):
        problems.append(f"model settings differ from the ones the bundle was trained with: "
                        f"{shortened(diffs)}")
    if check_fingerprints:
        try:
            fp = trunk_fp or trunk_fingerprint(model)
        except BundleError as err:
            problems.append(str(err))
        else:
            if fp != m.trunk_fingerprint:
                problems.append(
                    f"trunk fingerprint mismatch: the bundle was trained on trunk "
                    f"{m.trunk_fingerprint[:16]}... (model {m.model.get('name')!r}) but this "
                    f"model's trunk is {fp[:16]}...; its features would be wrong. Load it into "
                    "the model it was trained with, or retrain the task on this trunk")
    for s in m.sources:
        if s not in model.tasks:
            problems.append(f"fusion source task {s!r} is not loaded; this model has "
                            f"{model.task_names()}")
        elif model.tasks[s].is_fusion:
            problems.append(f"fusion source {s!r} is itself a fusion task here")
        elif check_fingerprints:
            fp_s = task_fingerprint(model, s, branch_only=True)
            if fp_s != m.source_fingerprints[s]:
                problems.append(
                    f"fusion source {s!r} differs from the one the bundle was trained on: "
                    f"fingerprint {fp_s[:16]}... vs bundle {m.source_fingerprints[s][:16]}... "
                    f"(its prompt/branch weights changed); retrain the fusion on this {s!r}")
    if m.kind in TASK_KINDS:
        try:
            expected = _expected_tensors(model, m)
        except (PerceptionError, ValueError, RuntimeError) as err:
            problems.append(f"cannot build a head for task config {m.task}: {err}")
        else:
            problems += tensor_problems(expected, bundle.tensors)
    return problems


def verify_bundle(bundle: Bundle, model: MultiTaskNet, *, trunk_fp: str | None = None,
                  check_fingerprints: bool = True) -> None:
    """Raise unless the bundle fits the model (see :func:`bundle_problems`).

    Raises:
        BundleError: listing every problem, one per line.
    """
    problems = bundle_problems(bundle, model, trunk_fp=trunk_fp,
                               check_fingerprints=check_fingerprints)
    if problems:
        raise BundleError(f"{bundle.where} does not fit this model "
                          f"({counted(problems, 'problem')}):\n"
                          + "\n".join(f"  - {p}" for p in problems))


def load_bundle_into(model: MultiTaskNet, bundle: Bundle, *, trunk_fp: str | None = None
                     ) -> TaskHead:
    """Add the bundle's task to ``model``: verify everything first, then ``add_task`` and copy the
    tensors; if anything fails after ``add_task`` the task is removed again, so the model is left
    exactly as it was. The new head takes the model's train/eval mode. Returns the head.

    Raises:
        BundleError: the bundle does not fit (nothing touched) or loading failed (rolled back).
    """
    verify_bundle(bundle, model, trunk_fp=trunk_fp)
    m = bundle.manifest
    with torch.random.fork_rng(devices=[]):
        head = model.add_task(m.task, own_group=m.adapter == "tadformer", sources=m.sources)
    try:
        own = task_tensors(model, m.name)  # the live tensors (state_dict keeps no copies)
        if set(own) != set(bundle.tensors):
            odd = sorted(set(own) ^ set(bundle.tensors))
            raise BundleError(f"the built task and the bundle differ in tensors {shortened(odd)}")
        with torch.no_grad():
            for k, v in bundle.tensors.items():
                own[k].copy_(v)
        head.train(model.training)
        if m.adapter == "tadformer":
            model.groups[m.name].train(model.training)
        if task_fingerprint(model, m.name) != m.task_fingerprint:
            raise BundleError("the loaded weights do not reproduce the bundle's task fingerprint")
    except BaseException as err:
        model.remove_task(m.name)  # rollback: the task and its group go, nothing else changed
        if not isinstance(err, Exception):  # KeyboardInterrupt & co. pass through unchanged
            raise
        raise BundleError(f"loading {bundle.where} failed after add_task: {err}; the task was "
                          "removed again, so the model is unchanged") from err
    return head
