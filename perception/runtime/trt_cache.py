"""Pure helpers of the TensorRT backend: precision policy, compile settings per torch-tensorrt
version, the environment probe and engine-cache keys.

Nothing here imports ``torch_tensorrt`` or ``tensorrt`` (importing them fails on machines without
an NVIDIA driver, and not with an ``ImportError``: shared/research/tensorrt_notes.md §7), so all of
it is unit-tested on CPU. Version facts cited as "notes §x" are from that file.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from perception.errors import BackendError

__all__ = ["UNAVAILABLE", "PRECISIONS", "PrecisionPolicy", "precision_policy", "TrtEnvironment",
           "probe_environment", "version_tuple", "MIN_TORCH_TRT", "compile_settings",
           "checked_settings", "engine_cache_key", "environment_dirname", "slug"]

UNAVAILABLE = "unavailable"
MIN_TORCH_TRT = (2, 6)  # strong typing (use_explicit_typing) and use_fp32_acc appear in 2.6
_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# pip ships the Python bindings under several distribution names; JetPack installs them by apt.
_TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11",
                      "tensorrt-cu13-bindings", "tensorrt-cu12-bindings")


# -- precision policy ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionPolicy:
    """Where each dtype is used.

    ``compute`` is the autocast dtype inside the graphs (None: no autocast). ``boundary`` is the
    dtype of tensors passed between engines (trunk outputs, a slot's stage features for fusion
    consumers); ``output`` is the dtype of a slot's raw prediction. Task weights are fed in their
    own dtype (fp32): the graph casts them where autocast decides, so LayerNorm/BatchNorm
    parameters and statistics never round through fp16.
    """

    name: str
    compute: torch.dtype | None
    boundary: torch.dtype
    output: torch.dtype = torch.float32
    fp32_layer_norm: bool = False  # LayerNorm computed in fp32 whatever the input dtype

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "compute": str(self.compute), "boundary": str(self.boundary),
                "output": str(self.output), "fp32_layer_norm": self.fp32_layer_norm}


_POLICIES = {
    # fp16 weights and matmuls (fp32 accumulation via use_fp32_acc), LayerNorm in fp32 (notes §5:
    # LN after attention overflows fp16), softmax in fp32 (CUDA autocast's fp32 list).
    "fp16": PrecisionPolicy("fp16", torch.float16, torch.float16, fp32_layer_norm=True),
    "fp32": PrecisionPolicy("fp32", None, torch.float32),
}
PRECISIONS = tuple(_POLICIES)


def precision_policy(name: str) -> PrecisionPolicy:
    """The policy for ``name``.

    Raises:
        BackendError: unknown precision (the message lists the valid ones).
    """
    if name not in _POLICIES:
        raise BackendError(f"tensorrt precision must be one of {', '.join(PRECISIONS)}, got "
                           f"{name!r} (int8 is onnxruntime-only)")
    return _POLICIES[name]


# -- environment -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtEnvironment:
    """What an engine is specific to. Every field is a string; missing pieces read "unavailable"."""

    gpu_name: str
    compute_capability: str
    cuda_version: str
    trt_version: str
    torch_trt_version: str
    torch_version: str
    tegra: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def probe_environment(*, tensorrt_module: ModuleType | None = None) -> TrtEnvironment:
    """GPU name, compute capability and library versions, without importing TensorRT.

    The TensorRT version comes from an already-imported ``tensorrt`` module when there is one (the
    backend imports it through torch_tensorrt), else from package metadata.
    """
    gpu = cc = UNAVAILABLE
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        gpu = torch.cuda.get_device_name(index)
        cc = "{}.{}".format(*torch.cuda.get_device_capability(index))
    trt_mod = tensorrt_module or sys.modules.get("tensorrt")
    trt = getattr(trt_mod, "__version__", None) or _distribution_version(*_TRT_DISTRIBUTIONS)
    return TrtEnvironment(
        gpu_name=gpu, compute_capability=cc, cuda_version=torch.version.cuda or UNAVAILABLE,
        trt_version=trt or UNAVAILABLE,
        torch_trt_version=_distribution_version("torch_tensorrt", "torch-tensorrt") or UNAVAILABLE,
        torch_version=torch.__version__, tegra=_TEGRA_RELEASE.exists())


def version_tuple(version: str) -> tuple[int, int]:
    """``"2.8.0a0+cu126"`` -> ``(2, 8)``.

    Raises:
        BackendError: not a version string (e.g. "unavailable").
    """
    m = re.match(r"\s*(\d+)\.(\d+)", version)
    if not m:
        raise BackendError(f"cannot read a major.minor version from {version!r}")
    return int(m.group(1)), int(m.group(2))


# -- compile settings ----------------------------------------------------------------------------------
def compile_settings(torch_trt_version: str, precision: str, *, timing_cache_path: str,
                     tegra: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``torch_tensorrt.dynamo.compile``, branched on the version.

    Precision lives in the graph (autocast + fp32 LayerNorm, see :class:`PrecisionPolicy`), so the
    settings only switch strong typing on where it is optional (2.6-2.12; always on from 2.13,
    where passing ``use_explicit_typing`` or ``enabled_precisions`` would be silently ignored,
    notes §1.3). ``enabled_precisions`` is never passed: on 2.10-2.12 it raises with strong typing
    and on 2.13+ it is dropped without a word. torch-tensorrt's own engine cache and refit are not
    used (``immutable_weights=True``): the backend caches whole compiled programs under its own key
    (notes §3.2: torch-tensorrt's key has no GPU and no TensorRT version).

    Raises:
        BackendError: the version is older than :data:`MIN_TORCH_TRT` or unknown, or the precision
            is unknown.
    """
    policy = precision_policy(precision)
    v = version_tuple(torch_trt_version)
    if v < MIN_TORCH_TRT:
        raise BackendError(
            f"torch-tensorrt {torch_trt_version} is too old for the tensorrt backend (needs >= "
            f"{MIN_TORCH_TRT[0]}.{MIN_TORCH_TRT[1]}: strong typing and use_fp32_acc); install the "
            "torch-tensorrt release matching your torch (docs/tensorrt.md)")
    s: dict[str, Any] = {
        "min_block_size": 1,  # maximise TensorRT coverage; fallbacks are logged after the build
        "require_full_compilation": False,
        "pass_through_build_failures": True,  # a failed TRT build raises instead of falling back
        "truncate_double": True,
        "immutable_weights": True,
        "timing_cache_path": timing_cache_path,  # persistent, per device (default is under /tmp)
    }
    if v < (2, 13):
        s["use_explicit_typing"] = True
    if policy.compute is not None:
        s["use_fp32_acc"] = True  # fp16 matmul inputs/outputs, fp32 accumulation (needs strong typing)
    else:
        s["disable_tf32"] = True  # "fp32" means fp32, not TF32 matmuls on Ampere+
    if v >= (2, 11):
        # Default True replaces an attention bias by a causal mask in efficient attention (notes
        # §5.3). Our Swin uses explicit matmul+softmax, so this is defensive.
        s["attn_bias_is_causal"] = False
    if tegra:
        s["workspace_size"] = 1 << 30  # bound builder scratch on unified-memory Jetsons (notes §6.4)
    return s


def checked_settings(compile_fn: Callable[..., Any], settings: Mapping[str, Any], *,
                     version: str = "?") -> dict[str, Any]:
    """``settings`` after checking every key is a named parameter of ``compile_fn``.

    torch-tensorrt's compile takes ``**kwargs`` and silently ignores unknown names (notes §1.5),
    so a removed or misspelled setting would be a no-op without this check.

    Raises:
        BackendError: a setting is not a parameter of this torch-tensorrt version.
    """
    params = inspect.signature(compile_fn).parameters
    named = {k for k, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    unknown = sorted(set(settings) - named)
    if unknown:
        raise BackendError(
            f"torch-tensorrt {version} has no compile setting(s) {unknown} (it would ignore them "
            f"silently); this tad_perception supports torch-tensorrt 2.6-2.14, see docs/tensorrt.md")
    return dict(settings)


# -- cache keys ------------------------------------------------------------------------------------------
def slug(text: str, max_len: int = 40) -> str:
    """Filename-safe form of ``text``: runs of other characters become ``_``."""
    out = re.sub(r"[^A-Za-z0-9.+-]+", "_", text)
    out = re.sub(r"_*-_*", "-", out).strip("_.-")
    return out[:max_len] or "_"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def engine_cache_key(fingerprint: str, kind: str, shape: Sequence[int] | str, precision: str,
                     gpu_name: str, trt_version: str, torch_trt_version: str,
                     extra: Mapping[str, Any] | str | None = None) -> str:
    """Filename-safe cache key of one compiled program.

    Readable prefix (fingerprint head, kind, shape, precision) plus a sha256 over *all* fields
    (full fingerprint, GPU, versions, ``extra`` as canonical JSON), so any change gives a new key.
    ``extra`` carries what else shapes the engine: compile settings, torch/CUDA versions, the
    precision policy, a slot's input signature.

    Raises:
        BackendError: empty fingerprint or kind.
    """
    if not fingerprint or not kind:
        raise BackendError("an engine cache key needs a trunk fingerprint and a kind")
    shape_text = shape if isinstance(shape, str) else "x".join(str(int(s)) for s in shape)
    fields = {"fingerprint": fingerprint, "kind": kind, "shape": shape_text,
              "precision": precision, "gpu": gpu_name, "trt": trt_version,
              "torch_trt": torch_trt_version,
              "extra": extra if isinstance(extra, str) or extra is None else dict(extra)}
    digest = hashlib.sha256(_canonical(fields).encode()).hexdigest()[:16]
    return "-".join([slug(fingerprint, 16), slug(kind), slug(shape_text), slug(precision, 8),
                     digest])


def environment_dirname(env: TrtEnvironment) -> str:
    """Per-device, per-version cache sub-directory (engines are not portable across either)."""
    return slug(f"{env.gpu_name}-sm{env.compute_capability}-trt{env.trt_version}"
                f"-tt{env.torch_trt_version}", 96)
