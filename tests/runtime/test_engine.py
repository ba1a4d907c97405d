"""PerceptionEngine on the torch and onnxruntime backends: outputs, backend agreement, hot swap
with rollback, warm starts from the export cache, and thread safety."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from perception.errors import ConfigError, InputError
from perception.runtime.engine import PerceptionEngine

from .conftest import make_model


@pytest.fixture(scope="module")
def engines(cache_dir) -> dict[str, PerceptionEngine]:
    return {b: PerceptionEngine(make_model(), b, cache_dir=cache_dir)
            for b in ("torch", "onnxruntime")}


def test_outputs_at_frame_resolution(engines, frames) -> None:
    res = engines["onnxruntime"].infer(frames[0])
    h, w = frames[0].shape[:2]
    assert set(res.outputs) == {"segmentation", "depth", "drivable", "lanes"}
    assert res.outputs["segmentation"].shape == (h, w) and res.outputs["segmentation"].dtype == np.uint8
    assert res.outputs["depth"].dtype == np.float32 and (res.outputs["depth"] > 0).all()
    assert res.outputs["drivable"].max() <= 2 and res.outputs["lanes"].max() <= 1
    assert {"preprocess", "trunk", "tasks", "postprocess", "total"} <= set(res.timings_ms)


def test_backends_agree(engines, frames) -> None:
    for frame in frames:
        a = engines["torch"].infer(frame)
        b = engines["onnxruntime"].infer(frame)
        for name, pa in a.raw.items():
            pb = b.raw[name]
            if pa.dtype == np.uint8:
                assert (pa == pb).mean() >= 0.999, name
            else:
                assert np.abs(pa - pb).max() / np.abs(pa).max() <= 1e-3, name


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_infer_batch_equals_single(engines, frames, backend) -> None:
    """Several cameras at once: one batch on torch, frame by frame through ORT's static programs."""
    eng = engines[backend]
    batch = eng.infer_batch(frames[:2])
    assert eng.logits(frames[:2])["depth"].shape[0] == 2
    for frame, res in zip(frames[:2], batch, strict=True):
        single = eng.infer(frame)
        for name in single.raw:
            if single.raw[name].dtype == np.uint8:
                assert (single.raw[name] == res.raw[name]).mean() >= 0.999
            else:
                assert np.allclose(single.raw[name], res.raw[name], rtol=1e-4, atol=1e-4)


def test_a_task_output_does_not_depend_on_the_other_tasks(engines, cache_dir, frames) -> None:
    """ORT runs slots side by side on one thread each: alone or beside three others, and whatever
    slot worker picks it up, segmentation is the same to the bit."""
    full = engines["onnxruntime"]
    assert full.backend.slot_workers == 2 and len(full.tasks) == 4
    solo = PerceptionEngine(make_model(), "onnxruntime", tasks=["segmentation"], cache_dir=cache_dir)
    for frame in frames:
        a, b = solo.infer(frame).raw["segmentation"], full.infer(frame).raw["segmentation"]
        assert np.array_equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_hot_add_replace_remove(engines, bundles, frames, backend) -> None:
    eng = engines[backend]
    before = eng.infer(frames[0])
    rep = eng.add_task(bundles["corridor"])
    assert rep.ok, rep.message
    added = eng.infer(frames[0])
    assert "corridor" in added.outputs
    assert added.tasks["corridor"] == rep.serial and added.tasks["segmentation"] == before.tasks["segmentation"]
    for name, out in before.raw.items():  # isolation: other tasks bit-identical
        assert np.array_equal(out, added.raw[name]), name
    rep = eng.replace_task(bundles["corridor_v2"])
    assert rep.ok, rep.message
    replaced = eng.infer(frames[0])
    assert replaced.tasks["corridor"] == rep.serial != added.tasks["corridor"]  # the new version ran
    assert not np.array_equal(replaced.raw["corridor"], added.raw["corridor"])
    rep = eng.add_task(bundles["fused"])
    assert rep.ok and "fused" in eng.infer(frames[0]).outputs
    if backend == "onnxruntime":  # the fusion slot ran after its sources, on their features
        ref = engines["torch"]
        assert ref.add_task(bundles["fused"]).ok
        a, b = ref.infer(frames[0]).raw["fused"], eng.infer(frames[0]).raw["fused"]
        ref.remove_task("fused")
        assert (a == b).mean() >= 0.999
    with pytest.raises(ConfigError, match="fused by"):
        eng.remove_task("segmentation")
    eng.remove_task("fused")
    eng.remove_task("corridor")
    assert eng.tasks == ["segmentation", "depth", "drivable", "lanes"]
    with pytest.raises(ConfigError, match="not active"):
        eng.remove_task("corridor")


def test_a_bundle_with_non_finite_output_fails_its_smoke_inference(engines, frames, tmp_path) -> None:
    """A bundle can be well-formed and still broken (here a NaN decoder bias, as diverged training
    leaves it): the smoke inference refuses it before any frame sees it."""
    import torch

    from perception.config import TaskConfig
    from perception.training.bundle import save_bundle

    model = make_model()
    head = model.add_task(TaskConfig(name="corridor", kind="mask"))
    with torch.no_grad():
        head.decoder.head.bias.fill_(float("nan"))
    path = save_bundle(model, "corridor", tmp_path / "nan.tadtask")
    eng = engines["onnxruntime"]
    before = eng.infer(frames[0])
    rep = eng.add_task(path)
    assert not rep.ok and "failed its smoke inference" in rep.message and "finite=False" in rep.message
    assert eng.tasks == ["segmentation", "depth", "drivable", "lanes"]
    after = eng.infer(frames[0])
    assert all(np.array_equal(before.raw[k], after.raw[k]) for k in before.raw)


def test_bad_bundles_are_refused_and_serving_continues(engines, bundles, frames, tmp_path) -> None:
    eng = engines["onnxruntime"]
    before = eng.infer(frames[0])
    bad = tmp_path / "corrupt.tadtask"
    shutil.copytree(bundles["corridor"], bad)
    (bad / "weights.safetensors").write_bytes(b"not a safetensors file at all")
    rep = eng.add_task(bad)
    assert not rep.ok
    assert "weights.safetensors" in rep.message and "corrupt" in rep.message, rep.message
    rep = eng.add_task(tmp_path / "missing.tadtask")
    assert not rep.ok
    rep = eng.replace_task(bundles["corridor"])  # not active yet
    assert not rep.ok and "not active" in rep.message
    assert eng.tasks == ["segmentation", "depth", "drivable", "lanes"]
    after = eng.infer(frames[0])
    for name in before.raw:
        assert np.array_equal(before.raw[name], after.raw[name])


def test_warm_start_exports_nothing(cache_dir) -> None:
    files = {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")}
    assert files, "the module fixture should have filled the cache"
    PerceptionEngine(make_model(), "onnxruntime", cache_dir=cache_dir)
    again = {p: p.stat().st_mtime_ns for p in (cache_dir / "onnx").glob("*.onnx")}
    assert again == files


def test_programs_from_older_code_are_not_loaded(cache_dir, tmp_path, monkeypatch) -> None:
    """The cache key covers the program version: after the trunk/slot graphs change, a warm cache
    of the same weights and shapes is exported again rather than loaded."""
    from perception.runtime import ort_backend

    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    before = {p.name for p in (cache / "onnx").glob("*.onnx")}
    monkeypatch.setattr(ort_backend, "PROGRAM_VERSION", ort_backend.PROGRAM_VERSION + 1)
    PerceptionEngine(make_model(), "onnxruntime", cache_dir=cache, tasks=["depth"])
    new = {p.name for p in (cache / "onnx").glob("*.onnx")} - before
    assert len(new) == 2  # the trunk and the depth slot
    assert all(f"-p{ort_backend.PROGRAM_VERSION}-" in name for name in new)


def test_swaps_while_frames_flow(engines, bundles, frames) -> None:
    eng = engines["torch"]
    errors: list[BaseException] = []
    seen: list[frozenset[str]] = []
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                seen.append(frozenset(eng.infer(frames[1]).outputs))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for _ in range(2):
            assert eng.add_task(bundles["corridor"]).ok
            eng.remove_task("corridor")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors
    base = frozenset({"segmentation", "depth", "drivable", "lanes"})
    assert seen and all(s in (base, base | {"corridor"}) for s in seen)


def test_depth_follows_the_engines_camera(cache_dir, frames) -> None:
    """With a camera (CameraInfo in the node), depth is scaled by the camera's vertical focal
    length at the network input over the model's ``focal_px``; other tasks do not change."""
    from calibration.camera import CameraModel

    model = make_model()
    model.update_task("depth", focal_px=100.0)
    engine = PerceptionEngine(model, "torch", cache_dir=cache_dir, threads=1)
    h, w = frames[0].shape[:2]
    plain = engine.infer(frames[0])
    engine.camera = CameraModel.pinhole(w, h, fx=0.8 * w, fy=0.8 * w, cx=w / 2 - 0.5, cy=h / 2 - 0.5)
    ratio = 0.8 * w * 128 / h / 100.0  # fy at the 128-row input / focal_px
    assert engine.focal_px == pytest.approx(100.0 * ratio)
    seen = engine.infer(frames[0])
    max_m = model.cfg.task("depth").max_depth_m
    inside = plain.outputs["depth"] * ratio < 0.99 * max_m
    assert inside.mean() > 0.5 and abs(ratio - 1) > 0.1
    np.testing.assert_allclose(seen.outputs["depth"][inside], plain.outputs["depth"][inside] * ratio,
                               rtol=1e-5)
    for name in ("segmentation", "drivable", "lanes"):
        assert np.array_equal(seen.outputs[name], plain.outputs[name]), name


def test_depth_follows_the_engines_mounting_height(cache_dir, frames) -> None:
    """With a mounting (the node's ``mounting.*``), depth of a model trained with a height rule
    is scaled by ``(z_m / height_m) ** height_exponent``; other tasks do not change."""
    from calibration.camera import Mounting

    model = make_model()
    model.update_task("depth", height_m=1.2, height_exponent=1.0)
    engine = PerceptionEngine(model, "torch", cache_dir=cache_dir, threads=1)
    assert engine.height_m is None
    plain = engine.infer(frames[0])
    engine.mounting = Mounting(x_m=1.5, y_m=0.0, z_m=1.8, roll_rad=0.0, pitch_rad=0.0, yaw_rad=0.0)
    assert engine.height_m == 1.8
    seen = engine.infer(frames[0])
    depth = plain.outputs["depth"]
    inside = depth * 1.5 < 0.99 * model.cfg.task("depth").max_depth_m
    assert inside.mean() > 0.5
    np.testing.assert_allclose(seen.outputs["depth"][inside], depth[inside] * 1.5, rtol=1e-5)
    for name in ("segmentation", "drivable", "lanes"):
        assert np.array_equal(seen.outputs[name], plain.outputs[name]), name


def test_bad_frames(engines) -> None:
    eng = engines["torch"]
    with pytest.raises(InputError, match="uint8"):
        eng.infer(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError, match=r"\[H, W, 3\]"):
        eng.infer(np.zeros((64, 64), np.uint8))


def test_vector_outputs_are_hwc_at_frame_resolution() -> None:
    """Normals come back as [H, W, 3] unit vectors at the frame's size (a resize of a CHW array
    would silently scramble them)."""
    from perception.config import model_config_from_dict
    from perception.models.network import MultiTaskNet

    cfg = model_config_from_dict({
        "name": "n", "input_size": [64, 128],
        "encoder": {"embed_dim": 16, "num_heads": [1, 2, 4, 8], "window_size": 4,
                    "depths": [1, 1, 1, 1]},
        "adapter": {"rank": 2}, "tasks": [{"name": "normals", "kind": "normals"}]}, "test")
    eng = PerceptionEngine(MultiTaskNet(cfg), "torch")
    out = eng.infer(np.full((100, 200, 3), 128, np.uint8)).outputs["normals"]
    assert out.shape == (100, 200, 3)
    assert np.allclose(np.linalg.norm(out, axis=-1), 1.0, atol=0.05)


def test_a_shared_first_stage_runs_and_gets_its_own_programs(cache_dir, frames, tmp_path) -> None:
    """``adapter.first_task_stage=1`` (the shipped default's setting) on ONNX Runtime: the slot
    graph matches the model's eager forward, and its cache file differs from the paper layout's
    although the trunk (and so its fingerprint) is the same - one key for both would load the
    other architecture's slot."""
    import torch

    from perception.models.network import MultiTaskNet
    from perception.training.fingerprint import trunk_fingerprint

    paper = make_model()
    shared = MultiTaskNet(paper.cfg.replace(**{"adapter.first_task_stage": 1})).eval()
    shared.load_state_dict(paper.state_dict(), strict=False)  # every tensor but stage 0's branch
    assert trunk_fingerprint(shared) == trunk_fingerprint(paper)
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    before = {p.name for p in (cache / "onnx").glob("*.onnx")}
    reference = {k: v.clone() for k, v in shared.state_dict().items()}
    engine = PerceptionEngine(shared, "onnxruntime", cache_dir=cache, tasks=["depth"])
    new = {p.name for p in (cache / "onnx").glob("*.onnx")} - before
    assert len(new) == 1 and "-slot-" in next(iter(new))  # the trunk file is reused
    eager = MultiTaskNet(shared.cfg).eval()
    eager.load_state_dict(reference)
    images = engine.preprocess.batch([frames[0]], False)
    with torch.no_grad():
        want = eager(images, tasks=["depth"])["depth"]
    got = engine.logits([frames[0]])["depth"]
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_swap_returns_the_new_tasks_output_on_the_latest_frame(cache_dir, bundles, frames,
                                                                 backend) -> None:
    """The smoke inference runs on the latest frame's trunk, so add/replace hand back that frame's
    output of the new task: the same arrays the next frame of the same image computes."""
    eng = PerceptionEngine(make_model(), backend, cache_dir=cache_dir)
    assert eng.add_task(bundles["fused"]).first_results is None  # no frame yet
    eng.remove_task("fused")
    pair = frames[:2] if backend == "torch" else frames[:1]  # ORT runs a batch frame by frame
    last = eng.infer_batch(pair)
    for operation, bundle, name in (("add", "corridor", "corridor"),
                                    ("replace", "corridor_v2", "corridor"),
                                    ("add", "fused", "fused")):
        rep = getattr(eng, f"{operation}_task")(bundles[bundle])
        assert rep.ok, rep.message
        firsts = rep.first_results
        assert [r.seq for r in firsts] == [last[0].seq] * len(pair)
        assert firsts[0].tasks == {name: rep.serial}
        again = eng.infer_batch(pair)
        assert again[0].seq == last[0].seq + 1
        for first, frame, res in zip(firsts, pair, again, strict=True):
            assert first.outputs[name].shape == frame.shape[:2]
            assert np.array_equal(first.raw[name], res.raw[name]), (operation, name)
            assert np.array_equal(first.outputs[name], res.outputs[name]), (operation, name)
        last = again


def test_the_engine_hides_its_long_lived_objects_from_the_cyclic_collector(cache_dir) -> None:
    """Full collections over the model and its programs were 40-90 ms pauses of every thread
    during hot swaps; the engine freezes what it built, so collections skip it."""
    import gc

    gc.unfreeze()
    engine = PerceptionEngine(make_model(), "onnxruntime", cache_dir=cache_dir, tasks=["depth"])
    assert gc.get_freeze_count() > 1000
    tracked = {id(o) for o in gc.get_objects()}
    assert id(engine.model) not in tracked and id(engine.model.encoder) not in tracked


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc only")
def test_swaps_give_freed_heap_pages_back(monkeypatch, cache_dir, bundles) -> None:
    """After every swap (done or refused) the engine trims glibc's heap: without it RSS kept the
    pages freed by a removed task version (docs/runtime.md, memory)."""
    from perception.runtime import engine as engine_module

    assert engine_module._MALLOC_TRIM is not None  # noqa: SLF001 - glibc's malloc_trim was found
    calls = []
    monkeypatch.setattr(engine_module, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    eng = PerceptionEngine(make_model(), "onnxruntime", cache_dir=cache_dir, tasks=["depth"])
    assert eng.add_task(bundles["corridor"]).ok and eng.replace_task(bundles["corridor_v2"]).ok
    assert not eng.add_task(bundles["corridor"]).ok  # refused: already active
    eng.remove_task("corridor")
    assert calls == [0, 0, 0, 0]
