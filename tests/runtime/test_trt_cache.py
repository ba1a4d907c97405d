"""TensorRT engine cache keys, the version-branched torch-tensorrt compile settings against each
version's named parameters (tensorrt_notes Appendix A) and the environment probe: all checkable
without a GPU (issue 6 item 4)."""
from __future__ import annotations

import inspect

import pytest
import torch

from perception.errors import BackendError
from perception.runtime.trt_cache import (
    UNAVAILABLE,
    TrtEnvironment,
    checked_settings,
    compile_settings,
    engine_cache_key,
    environment_dirname,
    precision_policy,
    probe_environment,
    version_tuple,
)

from .conftest import HAS_CUDA, HAS_TORCH_TRT

# -- cache keys --------------------------------------------------------------------------------------------
_KEY_ARGS = dict(fingerprint="ab" * 32, kind="slot-tadformer-k2-s0", shape=(1, 3, 256, 512),
                 precision="fp16", gpu_name="NVIDIA Orin (nvgpu)", trt_version="10.3.0.30",
                 torch_trt_version="2.8.0", extra={"settings": {"use_fp32_acc": True}, "x": 1})


def test_every_field_changes_the_cache_key() -> None:
    base = engine_cache_key(**_KEY_ARGS)
    changed = dict(fingerprint="ab" * 31 + "ac", kind="trunk", shape=(1, 3, 256, 480),
                   precision="fp32", gpu_name="NVIDIA GeForce RTX 4090", trt_version="10.3.0.26",
                   torch_trt_version="2.8.1", extra={"settings": {"use_fp32_acc": False}, "x": 1})
    keys = {base}
    for field, value in changed.items():
        key = engine_cache_key(**{**_KEY_ARGS, field: value})
        assert key != base, field
        keys.add(key)
    assert len(keys) == len(changed) + 1


def test_cache_key_is_a_stable_file_name() -> None:
    key = engine_cache_key(**_KEY_ARGS)
    assert key == engine_cache_key(**{**_KEY_ARGS, "extra": {"x": 1, "settings": {
        "use_fp32_acc": True}}})  # dict order does not matter
    assert key.startswith("abababababababab-slot-tadformer-k2-s0-1x3x256x512-fp16-")
    assert len(key) < 120 and all(c.isalnum() or c in "._+-" for c in key)
    weird = engine_cache_key(**{**_KEY_ARGS, "kind": "../../etc/passwd", "gpu_name": "a/b c"})
    assert "/" not in weird and not weird.startswith(".")
    with pytest.raises(BackendError, match="fingerprint"):
        engine_cache_key(**{**_KEY_ARGS, "fingerprint": ""})
    env = TrtEnvironment("NVIDIA Orin (nvgpu)", "8.7", "12.6", "10.3.0.30", "2.8.0", "2.8.0", True)
    assert environment_dirname(env) == "NVIDIA_Orin_nvgpu-sm8.7-trt10.3.0.30-tt2.8.0"


# -- compile settings against each version's named parameters (notes Appendix A) ----------------------------
_V25 = {"exported_program", "inputs", "arg_inputs", "kwarg_inputs", "device", "disable_tf32",
        "assume_dynamic_shape_support", "sparse_weights", "enabled_precisions", "engine_capability",
        "make_refittable", "debug", "num_avg_timing_iters", "workspace_size", "dla_sram_size",
        "dla_local_dram_size", "dla_global_dram_size", "truncate_double",
        "require_full_compilation", "min_block_size", "torch_executed_ops",
        "torch_executed_modules", "pass_through_build_failures", "max_aux_streams",
        "version_compatible", "optimization_level", "use_python_runtime", "use_fast_partitioner",
        "enable_experimental_decompositions", "dryrun", "hardware_compatible", "timing_cache_path",
        "lazy_engine_init", "cache_built_engines", "reuse_cached_engines", "engine_cache_dir",
        "engine_cache_size", "custom_engine_cache"}
_V26 = _V25 - {"make_refittable"} | {"use_explicit_typing", "use_fp32_acc", "immutable_weights",
                                     "refit_identical_engine_weights", "strip_engine_weights",
                                     "enable_weight_streaming"}
_V27 = _V26 | {"tiling_optimization_level", "l2_limit_for_tiling"}
_V28 = _V27 - {"debug"} | {"offload_module_to_cpu"}
_V210 = _V28 | {"use_distributed_mode_trace", "enable_autocast", "autocast_low_precision_type",
                "autocast_excluded_nodes", "autocast_excluded_ops",
                "autocast_max_output_threshold", "autocast_max_depth_of_reduction",
                "autocast_calibration_dataloader", "cpu_memory_budget",
                "enable_resource_partitioning"}
_V211 = _V210 | {"dynamically_allocate_resources", "decompose_attention", "attn_bias_is_causal"}
_V212 = _V211 | {"runtime_cache_path", "dynamic_shapes_kernel_specialization_strategy"}
_V213 = _V212 - {"enabled_precisions", "use_explicit_typing", "runtime_cache_path",
                 "dynamic_shapes_kernel_specialization_strategy"} | {"fallback_data_dependent_ops"}
_V214 = _V213 | {"use_complex_decomposition", "disabled_constant_fold_exclusions"}
PARAMS = {"2.6.0": _V26, "2.7.0": _V27, "2.8.0": _V28, "2.9.0": _V28, "2.10.0": _V210,
          "2.11.0": _V211, "2.12.0": _V212, "2.13.0": _V213, "2.14.0a0": _V214}


def _fake_compile(names: set[str]):
    """A function with torch_tensorrt.dynamo.compile's signature at one version (+ **kwargs)."""
    def compile(exported_program, *args, **kwargs):  # noqa: A001 - mirrors the real name
        return None
    P = inspect.Parameter
    params = [P("exported_program", P.POSITIONAL_OR_KEYWORD)]
    params += [P(n, P.KEYWORD_ONLY, default=None) for n in sorted(names - {"exported_program"})]
    compile.__signature__ = inspect.Signature([*params, P("kwargs", P.VAR_KEYWORD)])
    return compile


def test_appendix_parameter_sets_are_complete() -> None:
    assert len(_V214) == 59  # the notes count 59 named parameters at HEAD


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("version", list(PARAMS))
def test_settings_are_named_parameters_of_each_version(version, precision) -> None:
    s = compile_settings(version, precision, timing_cache_path="/c/timing.bin", tegra=True)
    assert checked_settings(_fake_compile(PARAMS[version]), s, version=version) == s
    v = version_tuple(version)
    assert "enabled_precisions" not in s and "make_refittable" not in s
    assert not {"cache_built_engines", "reuse_cached_engines", "custom_engine_cache"} & set(s)
    assert s["immutable_weights"] is True and s["workspace_size"] == 1 << 30
    assert ("use_explicit_typing" in s) == (v < (2, 13))  # strong typing is the only mode on 2.13+
    assert s.get("attn_bias_is_causal", False) is False and (("attn_bias_is_causal" in s)
                                                             == (v >= (2, 11)))
    assert s.get("use_fp32_acc", False) == (precision == "fp16")
    assert s.get("disable_tf32", False) == (precision == "fp32")


def test_unknown_settings_and_old_versions_are_refused() -> None:
    with pytest.raises(BackendError, match=r"enabled_precisions.*silently"):
        checked_settings(_fake_compile(_V213), {"enabled_precisions": {torch.half}},
                         version="2.13.0")
    with pytest.raises(BackendError, match="too old"):
        compile_settings("2.5.1", "fp16", timing_cache_path="t")
    with pytest.raises(BackendError, match="version"):
        compile_settings(UNAVAILABLE, "fp16", timing_cache_path="t")
    with pytest.raises(BackendError, match="fp16, fp32"):
        precision_policy("int8")
    assert "workspace_size" not in compile_settings("2.8.0", "fp16", timing_cache_path="t")
    assert version_tuple("2.8.0a0+cu126") == (2, 8)


@pytest.mark.skipif(HAS_CUDA, reason="checks the probe on a machine without a GPU")
def test_environment_probe_without_gpu() -> None:
    env = probe_environment()
    assert env.gpu_name == UNAVAILABLE and env.compute_capability == UNAVAILABLE
    assert env.torch_version == torch.__version__
    if not HAS_TORCH_TRT:
        assert env.torch_trt_version == UNAVAILABLE
    assert all(isinstance(v, str) for k, v in env.as_dict().items() if k != "tegra")
