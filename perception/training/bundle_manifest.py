"""A task bundle's manifest (``manifest.yaml``): what a bundle declares about itself, and the
strict parser that refuses a malformed one with a message naming the field (docs/bundles.md).
Checking the manifest against tensors and a model lives in ``bundle.py``."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from perception import __version__
from perception.config import AdapterConfig, DecoderConfig, EncoderConfig, TaskConfig, from_dict
from perception.errors import BundleError, ConfigError
from perception.training._artifact import FORMAT_VERSION, is_int, plain, shortened

__all__ = ["ADAPTERS", "BundleManifest", "parse_manifest"]

ADAPTERS = ("tadformer", "mtlora", "fusion", "decoder")


@dataclass(frozen=True)
class BundleManifest:
    """What a bundle declares about itself (``manifest.yaml``), format version 1."""

    name: str
    kind: str
    adapter: str  # one of ADAPTERS
    task: TaskConfig
    class_names: tuple[str, ...]
    colors_bgr: tuple[tuple[int, int, int], ...]  # per class id; () for continuous outputs
    output_type: str  # "ids" | "metres" | "vectors"
    rank: int  # shared LoRA rank of the trunk it was trained on
    input_size: tuple[int, int]  # (H, W) it was trained/validated at; informational
    model: dict[str, Any]  # {"name", "encoder", "adapter", "decoder"} of that model's config
    sources: tuple[str, ...]  # fused tasks, in order (fusion only)
    trunk_fingerprint: str
    task_fingerprint: str  # of the bundled tensors (see fingerprint.py)
    source_fingerprints: dict[str, str]  # {source: branch fingerprint} (fusion only)
    tensors: dict[str, dict[str, Any]]  # {key: {"shape": [...], "dtype": "float32"}}
    num_params: int
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics, flat
    created_by: str = f"tad_perception {__version__}"
    weights_sha256: str | None = None  # of weights.safetensors; None in the single-file variant
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = plain(asdict(self.task))
        order = ["format_version", "name", "kind", "adapter", "task", "class_names", "colors_bgr",
                 "output_type", "rank", "input_size", "model", "sources", "trunk_fingerprint",
                 "task_fingerprint", "source_fingerprints", "metrics", "num_params",
                 "created_by", "weights_sha256", "tensors"]
        return {k: plain(data[k]) for k in order}



def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def parse_manifest(data: Any, where: str) -> BundleManifest:
    """Validate a manifest mapping field by field; every problem is listed in one error.

    Raises:
        BundleError: the manifest is not a mapping, is from a newer format, or has bad fields.
    """
    if not isinstance(data, Mapping):
        raise BundleError(f"{where}: manifest must be a mapping, got {type(data).__name__}")
    version = data.get("format_version")
    if not is_int(version) or version < 1:
        raise BundleError(f"{where}: manifest field 'format_version' must be an integer >= 1, "
                          f"got {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is newer than this tool reads "
                          f"(up to {FORMAT_VERSION}, tad_perception {__version__}); upgrade "
                          "tad_perception to load it")
    bad: list[str] = []
    known = set(BundleManifest.__dataclass_fields__)
    if unknown := sorted(set(data) - known):
        bad.append(f"unknown fields {unknown}")
    if missing := sorted(k for k in known - set(data) if k not in ("metrics", "created_by")):
        raise BundleError(f"{where}: manifest is missing fields {missing}")

    def check(key: str, ok: bool, want: str) -> None:
        if not ok:
            bad.append(f"field {key!r} must be {want}, got {data[key]!r}")

    d = data
    check("name", isinstance(d["name"], str) and d["name"].replace("_", "").isalnum()
          and d["name"][:1].isalpha(), "a task name (letters, digits, _)")
    check("kind", isinstance(d["kind"], str) and bool(d["kind"]), "a task kind name")
    check("adapter", d["adapter"] in ADAPTERS, f"one of {list(ADAPTERS)}")
    check("class_names", isinstance(d["class_names"], list)
          and all(isinstance(c, str) for c in d["class_names"]), "a list of strings")
    check("colors_bgr", isinstance(d["colors_bgr"], list) and all(
        isinstance(c, list) and len(c) == 3 and all(is_int(x) and 0 <= x <= 255 for x in c)
        for c in d["colors_bgr"]), "a list of [b, g, r] integers 0..255")
    check("output_type", isinstance(d["output_type"], str), "a string")
    check("rank", is_int(d["rank"]) and d["rank"] >= 0, "an integer >= 0")
    check("input_size", isinstance(d["input_size"], list) and len(d["input_size"]) == 2
          and all(is_int(x) and x > 0 for x in d["input_size"]), "[height, width] in pixels")
    check("sources", isinstance(d["sources"], list)
          and all(isinstance(s, str) for s in d["sources"]), "a list of task names")
    check("trunk_fingerprint", _is_hex64(d["trunk_fingerprint"]), "a sha256 hex digest")
    check("task_fingerprint", _is_hex64(d["task_fingerprint"]), "a sha256 hex digest")
    check("source_fingerprints", isinstance(d["source_fingerprints"], Mapping)
          and all(_is_hex64(v) for v in d["source_fingerprints"].values()),
          "a mapping {source task: sha256 hex digest}")
    check("tensors", isinstance(d["tensors"], Mapping) and all(
        isinstance(v, Mapping) and set(v) == {"shape", "dtype"} and isinstance(v["shape"], list)
        and all(is_int(x) and x >= 0 for x in v["shape"]) and isinstance(v["dtype"], str)
        for v in d["tensors"].values()), "a mapping {key: {shape: [ints], dtype: name}}")
    check("num_params", is_int(d["num_params"]) and d["num_params"] >= 0, "an integer >= 0")
    check("weights_sha256", d["weights_sha256"] is None or _is_hex64(d["weights_sha256"]),
          "a sha256 hex digest or null")
    metrics = d.get("metrics") or {}
    if not isinstance(metrics, Mapping) or not all(
            isinstance(v, (int, float, str, bool)) or v is None for v in metrics.values()):
        bad.append("field 'metrics' must be a flat mapping of numbers/strings/null, got "
                   f"{metrics!r}")
    task = d["task"]
    if not isinstance(task, Mapping):
        bad.append(f"field 'task' must be a task config mapping, got {task!r}")
        task = None
    else:
        try:
            task = from_dict(TaskConfig, task, "field 'task'")
        except ConfigError as err:
            bad.append(str(err))
            task = None
    model = d["model"]
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
        bad.append("field 'model' must be a mapping with name/encoder/adapter/decoder, got "
                   f"{model!r}")
    else:
        for key, cls in (("encoder", EncoderConfig), ("adapter", AdapterConfig),
                         ("decoder", DecoderConfig)):
            try:
                from_dict(cls, model.get(key), f"field 'model.{key}'")
            except ConfigError as err:
                bad.append(str(err))
    if not bad:  # cross-field rules, once every field has the right type
        name, sources = d["name"], d["sources"]
        if task is not None and (task.name != name or task.kind != d["kind"]):
            bad.append(f"field 'task' names {task.name!r} ({task.kind}) but the bundle is "
                       f"{name!r} ({d['kind']})")
        if (d["adapter"] == "fusion") != bool(sources):
            bad.append(f"adapter {d['adapter']!r} with sources {sources}: fusion bundles, and "
                       "only they, name their source tasks")
        if set(d["source_fingerprints"]) != set(sources):
            bad.append(f"source_fingerprints cover {sorted(d['source_fingerprints'])} but sources "
                       f"are {sources}")
        prefixes = (f"tasks.{name}.",) + ((f"groups.{name}.",) if d["adapter"] == "tadformer"
                                          else ())
        if stray := sorted(k for k in d["tensors"] if not k.startswith(prefixes)):
            bad.append(f"tensors outside the task ({' or '.join(p + '*' for p in prefixes)}): "
                       f"{shortened(stray)}")
    if bad:
        raise BundleError(f"{where}: malformed manifest: " + "; ".join(bad))
    return BundleManifest(
        name=d["name"], kind=d["kind"], adapter=d["adapter"], task=task,
        class_names=tuple(d["class_names"]), colors_bgr=tuple(tuple(c) for c in d["colors_bgr"]),
        output_type=d["output_type"], rank=d["rank"], input_size=tuple(d["input_size"]),
        model=plain(model), sources=tuple(sources), trunk_fingerprint=d["trunk_fingerprint"],
        task_fingerprint=d["task_fingerprint"],
        source_fingerprints=dict(d["source_fingerprints"]), tensors=plain(d["tensors"]),
        num_params=d["num_params"], metrics=dict(metrics),
        created_by=str(d.get("created_by", "unknown")), weights_sha256=d["weights_sha256"],
        format_version=version)


# -- export and write ----------------------------------------------------------------------------
