"""``adapter.first_task_stage``: stages before it stay shared, so a task's feature there is the
trunk's own, and no parameter of the skipped stages exists (none would train or ship unused)."""
from __future__ import annotations

import pytest
import torch

from perception.errors import ConfigError
from perception.models.network import MultiTaskNet
from perception.models.tadformer import tadformer_branch
from perception.training.model_file import warm_start


@pytest.fixture
def shared_model(tiny_model, tiny_cfg) -> MultiTaskNet:
    """``tiny_model``'s tensors (adapters away from the identity) minus stage 0's branch."""
    model = MultiTaskNet(tiny_cfg.replace(**{"adapter.first_task_stage": 1})).eval()
    missing, unexpected = model.load_state_dict(tiny_model.state_dict(), strict=False)
    assert not missing and unexpected
    return model


def test_stage_zero_is_the_trunks_and_later_stages_are_per_task(shared_model, image) -> None:
    with torch.no_grad():
        feats, traces = shared_model.encoder(image, trace=True)
        a, b = (tadformer_branch(shared_model.encoder, feats, traces,
                                 shared_model.tasks[t].prompt, shared_model.groups["base"])
                for t in ("drivable", "lanes"))
    assert a[0] is feats[0] and b[0] is feats[0]
    for s in (1, 2, 3):
        assert not torch.allclose(a[s], b[s]), s


def test_skipped_stages_hold_no_parameters(tiny_model, shared_model) -> None:
    names = set(dict(shared_model.named_parameters()))
    assert not [n for n in names if ".prompt_norms.0." in n or ".dtf.0." in n]
    assert {n for n in dict(tiny_model.named_parameters()) if n not in names} == {
        n for n in dict(tiny_model.named_parameters())
        if ".prompt_norms.0." in n or ".dtf.0." in n}
    loss = sum(o.float().mean() for o in shared_model.train()(torch.randn(1, 3, 256, 512)).values())
    loss.backward()
    unused = [n for n, p in shared_model.named_parameters() if p.grad is None]
    assert unused == []  # DDP-safe: every parameter takes part


def test_warm_start_keeps_every_tensor_that_still_fits(tiny_model, tiny_cfg) -> None:
    shared_model = MultiTaskNet(tiny_cfg.replace(**{"adapter.first_task_stage": 1}))
    report = warm_start(tiny_model, shared_model)
    assert report["new"] == []
    assert sorted(report["dropped"]) == sorted(
        n for n in tiny_model.state_dict() if ".prompt_norms.0." in n or ".dtf.0." in n)
    for name, value in shared_model.state_dict().items():
        assert torch.equal(value, tiny_model.state_dict()[name]), name


def test_warm_start_refuses_another_task_list(tiny_model, tiny_cfg) -> None:
    other = MultiTaskNet(tiny_cfg.replace(tasks=[t for t in tiny_cfg.to_dict()["tasks"][:2]]))
    with pytest.raises(ConfigError, match=r"warm start needs the same tasks; \['segmentation', "
                                          r"'depth', 'drivable', 'lanes'\] != \['segmentation', 'depth'\]"):
        warm_start(tiny_model, other)


@pytest.mark.parametrize(("changes", "message"), [
    ({"adapter.first_task_stage": 4}, r"adapter.first_task_stage 4; valid: 0-3"),
    ({"adapter.first_task_stage": 1, "adapter.variant": "mtlora"},
     r"adapter.first_task_stage applies to the tadformer variant only"),
])
def test_bad_settings_are_refused(tiny_cfg, changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_cfg.replace(**changes)
