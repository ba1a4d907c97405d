"""Task bundles (issue 5 item 4, DESIGN §3): round trip to bit-identical outputs, the freeze proof,
and every refusal with its message checked and the model left untouched."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

import perception.training.bundle as bundle_mod
from perception.cli import main as tadp
from perception.config import TaskConfig, load_config
from perception.errors import BundleError, CheckpointError
from perception.models.network import MultiTaskNet
from perception.training.bundle import (
    bundle_problems,
    load_bundle_into,
    read_bundle,
    save_bundle,
    write_bundle,
)
from perception.training.fingerprint import task_fingerprint, trunk_fingerprint
from perception.training.model_file import load_model, load_weights, save_model
from perception.training.modes import set_trainable, state_checksums, train_scope

OWN = ("tasks.corridor.", "groups.corridor.")


def _copy(world, task: str, tmp_path: Path) -> Path:
    dst = tmp_path / f"{task}.tadtask"
    shutil.copytree(world.bundles[task], dst)
    return dst


def _snapshot(model: MultiTaskNet) -> dict:
    return {"tasks": model.task_names(), "groups": list(model.groups),
            "state": state_checksums(model), "training": model.training,
            "rng": torch.get_rng_state().clone()}


def _assert_unchanged(model: MultiTaskNet, before: dict) -> None:
    after = _snapshot(model)
    assert after["tasks"] == before["tasks"] and after["groups"] == before["groups"]
    assert after["state"] == before["state"]
    assert after["training"] == before["training"]
    assert torch.equal(after["rng"], before["rng"]), "loading consumed the caller's RNG"


# -- round trip ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "layout"), [("corridor", "dir"), ("fused", "dir"),
                                               ("corridor", "file")])
def test_round_trip_is_bit_identical(world, tmp_path, task, layout) -> None:
    path = world.bundles[task] if layout == "dir" else save_bundle(
        world.source, task, tmp_path / f"{task}.safetensors")
    fresh = load_model(world.base_path)  # same trunk and base tasks, nothing of the task
    assert task not in fresh.tasks
    head = load_bundle_into(fresh, read_bundle(path))
    assert not head.training
    with torch.no_grad():
        out = fresh(world.image, [task])[task]
    assert torch.equal(out, world.reference[task])
    assert task_fingerprint(fresh, task) == task_fingerprint(world.source, task)


def test_bundle_holds_only_the_task(world) -> None:
    bundle = read_bundle(world.bundles["corridor"])
    own = {k for k in world.source.state_dict() if k.startswith(OWN)}
    assert set(bundle.tensors) == own and any(k.startswith("groups.corridor.") for k in own)
    fused = read_bundle(world.bundles["fused"])
    assert fused.tensors and all(k.startswith("tasks.fused.") for k in fused.tensors)


def test_manifest_contents(world, tmp_path) -> None:
    raw = yaml.safe_load((world.bundles["corridor"] / "manifest.yaml").read_text())
    assert raw["format_version"] == 1 and raw["name"] == "corridor" and raw["kind"] == "mask"
    assert raw["adapter"] == "tadformer" and raw["rank"] == 8 and raw["input_size"] == [256, 512]
    assert raw["class_names"] == ["background", "foreground"]
    assert raw["colors_bgr"] == [[0, 0, 0], [255, 0, 255]]
    assert raw["task"]["name"] == "corridor" and raw["model"]["name"] == "tiny"
    assert raw["trunk_fingerprint"] == trunk_fingerprint(world.source)
    assert raw["metrics"] == {"corridor/iou": 0.5}
    assert raw["created_by"].startswith("tad_perception ")
    assert raw["tensors"]["tasks.corridor.prompt.prompt"] == {"shape": [1, 32], "dtype": "float32"}
    fused = read_bundle(world.bundles["fused"]).manifest
    assert fused.adapter == "fusion" and fused.sources == ("segmentation", "drivable")
    assert fused.source_fingerprints == {
        s: task_fingerprint(world.source, s, branch_only=True) for s in fused.sources}
    path = save_bundle(world.source, "corridor", tmp_path,
                       metrics={"corridor/iou": torch.tensor(0.25),
                                "corridor/undefined": float("nan")})
    assert read_bundle(path).manifest.metrics == {"corridor/iou": 0.25, "corridor/undefined": None}


def test_adapter_training_keeps_trunk_and_sources(world, tmp_path) -> None:
    """Freeze proof: training a new task's adapter leaves the trunk and every base task's
    fingerprint as they were, so its bundle loads into the untouched base model."""
    model = load_model(world.base_path)
    trunk, seg = trunk_fingerprint(model), task_fingerprint(model, "segmentation")
    model.add_task(TaskConfig(name="corridor", kind="mask"))
    trained = set_trainable(model, "adapter", "corridor")
    train_scope(model, "adapter", "corridor")
    before = state_checksums(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(world.image, ["corridor"])["corridor"].pow(2).mean().backward()
    opt.step()
    changed = {k for k, v in state_checksums(model).items() if before[k] != v}
    assert changed and all(k.startswith(OWN) for k in changed | trained)
    assert trunk_fingerprint(model) == trunk and task_fingerprint(model, "segmentation") == seg
    model.eval()
    with torch.no_grad():
        ref = model(world.image, ["corridor"])["corridor"]
    fresh = load_model(world.base_path)
    load_bundle_into(fresh, read_bundle(save_bundle(model, "corridor", tmp_path)))
    with torch.no_grad():
        assert torch.equal(fresh(world.image, ["corridor"])["corridor"], ref)


@pytest.mark.parametrize("variant", ["mtlora", "none"])
def test_other_variants_bundle_whole_tasks(tmp_path, variant) -> None:
    torch.manual_seed(0)
    model = MultiTaskNet(load_config("tiny").replace(**{"adapter.variant": variant}))
    base = save_model(model, tmp_path / "model.safetensors")
    path = save_bundle(model, "lanes", tmp_path)  # a base task is self-contained here
    bundle = read_bundle(path)
    assert bundle.manifest.adapter == {"mtlora": "mtlora", "none": "decoder"}[variant]
    fresh = load_model(base)
    fresh.remove_task("lanes")
    load_bundle_into(fresh, bundle)
    assert task_fingerprint(fresh, "lanes") == task_fingerprint(model, "lanes")


# -- refusals: each message checked, the model untouched -----------------------------------------
def _rewrite(path: Path, edit: Callable[[dict], None]) -> None:
    """Edit a bundle's tensors and write it back consistently (index, sha re-sealed)."""
    bundle = read_bundle(path)
    edit(bundle.tensors)
    write_bundle(bundle, path, overwrite=True)


def _edit_manifest(path: Path, edit: Callable[[dict], None]) -> None:
    data = yaml.safe_load((path / "manifest.yaml").read_text())
    edit(data)
    (path / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _weights(path: Path) -> Path:
    return path / "weights.safetensors"


def _change_lora_b(model, path):
    with torch.no_grad():
        model.encoder.layers[0].blocks[0].attn.qkv.lora_B.add_(1e-3)


def _truncate(keep: Callable[[int], int]):
    def mutate(model, path):
        data = _weights(path).read_bytes()
        _weights(path).write_bytes(data[:keep(len(data))])
    return mutate


def _garbage(model, path):
    g = torch.Generator().manual_seed(3)
    _weights(path).write_bytes(bytes(torch.randint(0, 256, (4096,), generator=g).tolist()))


def _flip_last_byte(model, path):
    data = bytearray(_weights(path).read_bytes())
    data[-1] ^= 0xFF
    _weights(path).write_bytes(bytes(data))


def _torch_save(zip_format: bool):
    def mutate(model, path):
        torch.save({"tasks.corridor.prompt.prompt": torch.zeros(1, 32)}, _weights(path),
                   _use_new_zipfile_serialization=zip_format)
    return mutate


def _pt_beside_manifest(model, path):
    torch.save({"x": torch.zeros(1)}, path / "weights.pt")
    _weights(path).unlink()


def _python_tag(model, path):
    (path / "manifest.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")


def _load_twice(model, path):
    load_bundle_into(model, read_bundle(path))


def _change_source_prompt(model, path):
    with torch.no_grad():
        model.tasks["segmentation"].prompt.prompt.add_(0.01)


CASES: dict[str, tuple[str, Callable, str]] = {
    "wrong_trunk": ("corridor", _change_lora_b,
                    r"trunk fingerprint mismatch: the bundle was trained on trunk "
                    r"[0-9a-f]{16}\.\.\. \(model 'tiny'\) but this model's trunk is [0-9a-f]{16}"),
    "wrong_shape": ("corridor", lambda m, p: _rewrite(p, lambda t: t.update(
        {"tasks.corridor.decoder.head.weight": torch.zeros(3, 32, 1, 1)})),
        r"1 tensor with the wrong shape/dtype: tasks\.corridor\.decoder\.head\.weight is "
        r"\[3, 32, 1, 1\] float32, expected \[2, 32, 1, 1\] float32"),
    "wrong_dtype": ("corridor", lambda m, p: _rewrite(p, lambda t: t.update(
        {"tasks.corridor.prompt.prompt": t["tasks.corridor.prompt.prompt"].double()})),
        r"tasks\.corridor\.prompt\.prompt is \[1, 32\] float64, expected \[1, 32\] float32"),
    "missing_tensor": ("corridor", lambda m, p: _rewrite(
        p, lambda t: t.pop("groups.corridor.prompt_gates")),
        r"1 missing tensor: groups\.corridor\.prompt_gates$"),
    "unexpected_tensor": ("corridor", lambda m, p: _rewrite(p, lambda t: t.update(
        {"tasks.corridor.decoder.extra": torch.zeros(2)})),
        r"1 unexpected tensor: tasks\.corridor\.decoder\.extra$"),
    "truncated_header": ("corridor", _truncate(lambda n: 100),
                         r"weights\.safetensors' is corrupt: not a valid safetensors file "
                         r"\(header length \d+ exceeds the file size 100 \(truncated\?\)\)"),
    "truncated_data": ("corridor", _truncate(lambda n: n // 2),
                       r"weights\.safetensors' is corrupt: not a valid safetensors file"),
    "garbage": ("corridor", _garbage, r"is corrupt: not a valid safetensors file"),
    "sha_mismatch": ("corridor", _flip_last_byte,
                     r"weights\.safetensors sha256 [0-9a-f]{16}\.\.\. does not match the "
                     r"manifest's [0-9a-f]{16}\.\.\.; the file was modified or damaged"),
    "pickle_zip": ("corridor", _torch_save(True),
                   r"refused: it is a zip archive \(the torch\.save format\)\. Pickle payloads "
                   r"are never loaded"),
    "pickle_legacy": ("corridor", _torch_save(False),
                      r"refused: it starts with the pickle protocol-2 header\. Pickle payloads "
                      r"are never loaded"),
    "pickle_suffix": ("corridor", _pt_beside_manifest,
                      r"weights\.pt' refused: its suffix '\.pt' is a torch\.save/pickle format\. "
                      r"Pickle payloads are never loaded"),
    "future_version": ("corridor", lambda m, p: _edit_manifest(
        p, lambda d: d.update(format_version=2)),
        r"format_version 2 is newer than this tool reads \(up to 1, .*upgrade tad_perception"),
    "malformed_rank": ("corridor", lambda m, p: _edit_manifest(p, lambda d: d.update(rank="eight")),
                       r"malformed manifest: field 'rank' must be an integer >= 0, got 'eight'$"),
    "malformed_colors": ("corridor", lambda m, p: _edit_manifest(
        p, lambda d: d.update(colors_bgr=[[0, 0, 300]])),
        r"field 'colors_bgr' must be a list of \[b, g, r\] integers 0\.\.255, "
        r"got \[\[0, 0, 300\]\]"),
    "missing_field": ("corridor", lambda m, p: _edit_manifest(
        p, lambda d: d.pop("task_fingerprint")),
                      r"manifest is missing fields \['task_fingerprint'\]"),
    "python_yaml_tag": ("corridor", _python_tag, r"manifest\.yaml is not valid \(safe\) YAML"),
    "index_mismatch": ("corridor", lambda m, p: _edit_manifest(
        p, lambda d: d["tensors"]["tasks.corridor.prompt.prompt"].update(shape=[1, 33])),
        r"tensor index does not match the weights: shape/dtype differ: tasks\.corridor\.prompt"
        r"\.prompt: manifest \[1, 33\] float32 vs file \[1, 32\] float32"),
    "already_loaded": ("corridor", _load_twice,
                       r"a task named 'corridor' is already loaded; remove it first"),
    "source_missing": ("fused", lambda m, p: m.remove_task("drivable"),
                       r"fusion source task 'drivable' is not loaded; this model has "
                       r"\['segmentation', 'depth', 'lanes'\]"),
    "source_changed": ("fused", _change_source_prompt,
                       r"fusion source 'segmentation' differs from the one the bundle was trained "
                       r"on: fingerprint [0-9a-f]{16}\.\.\. vs bundle [0-9a-f]{16}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refusal(world, tmp_path, case) -> None:
    task, mutate, pattern = CASES[case]
    model = load_model(world.base_path)
    path = _copy(world, task, tmp_path)
    mutate(model, path)
    before = _snapshot(model)
    with pytest.raises(BundleError, match=pattern):
        load_bundle_into(model, read_bundle(path))
    _assert_unchanged(model, before)


def test_pickle_file_given_directly(tmp_path) -> None:
    path = tmp_path / "corridor.pth"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(BundleError, match=r"corridor\.pth' refused: .*Pickle payloads are never"):
        read_bundle(path)


def test_wrong_variant_lists_every_problem(world) -> None:
    model = MultiTaskNet(load_config("tiny").replace(**{"adapter.variant": "mtlora"}))
    problems = bundle_problems(read_bundle(world.bundles["corridor"]), model)
    text = "\n".join(problems)
    assert "a 'tadformer' bundle cannot run on this 'mtlora' model" in text
    assert "adapter.variant: bundle 'tadformer' vs model 'mtlora'" in text
    assert "trunk fingerprint mismatch" in text and "missing tensors: tasks.corridor.task_lora" in text
    assert "1 unexpected tensor: tasks.corridor.prompt.prompt" in text
    assert len(problems) >= 4


def test_source_decoder_change_is_accepted(world) -> None:
    """A fusion task depends on its sources' branches, not on their decoders."""
    model = load_model(world.base_path)
    with torch.no_grad():
        model.tasks["drivable"].decoder.head.bias.add_(1.0)
    assert bundle_problems(read_bundle(world.bundles["fused"]), model) == []


def test_merged_lora_needs_a_precomputed_trunk_fingerprint(world) -> None:
    model = load_model(world.base_path)
    trunk = trunk_fingerprint(model)
    model.merge_lora()
    bundle = read_bundle(world.bundles["corridor"])
    before = _snapshot(model)
    with pytest.raises(BundleError, match=r"shared-LoRA layers of this model are merged .* "
                                          r"pass it as trunk_fp=\.\.\."):
        load_bundle_into(model, bundle)
    _assert_unchanged(model, before)
    load_bundle_into(model, bundle, trunk_fp=trunk)
    assert "corridor" in model.tasks


def test_failure_after_add_task_rolls_back(world, monkeypatch) -> None:
    model = load_model(world.base_path)
    before = _snapshot(model)
    monkeypatch.setattr(bundle_mod, "task_fingerprint", lambda *a, **k: "0" * 64)
    with pytest.raises(BundleError, match="do not reproduce the bundle's task fingerprint"):
        load_bundle_into(model, read_bundle(world.bundles["corridor"]))
    _assert_unchanged(model, before)


# -- saving --------------------------------------------------------------------------------------
def test_save_refuses_a_base_task_and_existing_targets(world, tmp_path) -> None:
    with pytest.raises(BundleError, match=r"task 'segmentation' runs on the shared 'base' branch "
                                          r"group, .* add_task\(cfg, own_group=True\)"):
        save_bundle(world.source, "segmentation", tmp_path)
    with pytest.raises(BundleError, match=r"no task 'nope' to bundle"):
        save_bundle(world.source, "nope", tmp_path)
    path = save_bundle(world.source, "corridor", tmp_path)
    with pytest.raises(BundleError, match=r"corridor\.tadtask already exists; pass overwrite=True"):
        save_bundle(world.source, "corridor", tmp_path)
    assert save_bundle(world.source, "corridor", tmp_path, overwrite=True) == path
    assert read_bundle(path).manifest.task_fingerprint == task_fingerprint(world.source, "corridor")


def test_failed_save_leaves_nothing(world, tmp_path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_mod.yaml, "safe_dump", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_bundle(world.source, "corridor", tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- full model file -----------------------------------------------------------------------------
def test_model_file_round_trip_with_added_tasks(world, tmp_path) -> None:
    path = save_model(world.source, tmp_path / "full.safetensors")
    assert (tmp_path / "full.yaml").is_file()
    model = load_model(tmp_path / "full.yaml")
    assert model.task_names() == world.source.task_names()
    assert model.tasks["fused"].sources == ("segmentation", "drivable")
    assert state_checksums(model) == state_checksums(world.source)
    assert path.stat().st_mode & 0o044 == 0o044  # readable by the node's user


def test_model_file_refusals(world, tmp_path) -> None:
    pickled = tmp_path / "model.pth"
    torch.save(world.source.state_dict(), pickled)
    model = load_model(world.base_path)
    with pytest.raises(CheckpointError, match=r"model\.pth' refused: .*Pickle payloads are never"):
        load_weights(model, pickled)
    copy = tmp_path / "base.safetensors"
    shutil.copy(world.base_path, copy)
    shutil.copy(world.base_path.with_suffix(".yaml"), copy.with_suffix(".yaml"))
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the sha256 in their manifest"):
        load_model(copy)
    full = save_model(world.source, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match=r"do not fit this model \(tiny, .*\d+ unexpected "
                                              r"tensors: groups\.corridor\."):
        load_weights(load_model(world.base_path), full)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_inspect(world, capsys) -> None:
    assert tadp(["bundle", "inspect", str(world.bundles["corridor"])]) == 0
    out = capsys.readouterr().out
    fp = trunk_fingerprint(world.source)
    for text in ("corridor  kind=mask  adapter=tadformer", "params", "tensors", fp,
                 "corridor/iou=0.5", "background, foreground"):
        assert text in out
    assert tadp(["bundle", "inspect", "--json", str(world.bundles["fused"])]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["sources"] == ["segmentation", "drivable"]


def test_cli_inspect_refuses_a_corrupt_bundle(world, tmp_path, capsys) -> None:
    path = _copy(world, "corridor", tmp_path)
    _truncate(lambda n: n // 2)(None, path)
    assert tadp(["bundle", "inspect", str(path)]) == 2
    assert "is corrupt" in capsys.readouterr().err


def test_cli_verify(world, tmp_path, capsys) -> None:
    fused = str(world.bundles["fused"])
    assert tadp(["bundle", "verify", fused, "--config", "tiny",
                 "--weights", str(world.base_path)]) == 0
    assert "OK: fused (fusion) fits model 'tiny': trunk and source fingerprints" in \
        capsys.readouterr().out
    assert tadp(["bundle", "verify", fused, "--config", "tiny"]) == 0
    assert "structure only (--config without --weights" in capsys.readouterr().out
    assert tadp(["bundle", "verify", fused, "--weights", str(world.base_path)]) == 0  # its manifest
    assert "trunk and source fingerprints" in capsys.readouterr().out
    torch.manual_seed(1)
    other = save_model(MultiTaskNet(load_config("tiny")), tmp_path / "other.safetensors")
    assert tadp(["bundle", "verify", fused, "--config", "tiny", "--weights", str(other)]) == 2
    err = capsys.readouterr().err
    assert "does not fit model 'tiny'" in err and "trunk fingerprint mismatch" in err
    assert "fusion source 'segmentation' differs" in err


def test_cli_verify_defaults_to_the_shipped_model(world, monkeypatch, tmp_path, capsys) -> None:
    """No flag: the bundle is checked against the shipped default model, fingerprints included
    (a bundle from another trunk is refused); with no default model, it says which flag to pass."""
    from perception.runtime import default_model

    monkeypatch.setattr(default_model, "DEFAULT_MODEL", world.base_path)
    fused = str(world.bundles["fused"])
    assert tadp(["bundle", "verify", fused]) == 0
    assert f"trunk and source fingerprints of {world.base_path}" in capsys.readouterr().out
    torch.manual_seed(1)
    other = save_model(MultiTaskNet(load_config("tiny")), tmp_path / "other.safetensors")
    monkeypatch.setattr(default_model, "DEFAULT_MODEL", other)
    assert tadp(["bundle", "verify", fused]) == 2
    assert "trunk fingerprint mismatch" in capsys.readouterr().err
    monkeypatch.setattr(default_model, "DEFAULT_MODEL", tmp_path / "missing.safetensors")
    assert tadp(["bundle", "verify", fused]) == 2
    assert "shipped default model" in capsys.readouterr().err
    assert tadp(["bundle", "verify", fused, "--config", "tiny"]) == 0  # structure only still works
