"""Task isolation (DESIGN §2): a task's output does not depend on which other tasks exist."""
from __future__ import annotations

import torch

from perception.config import TaskConfig


def test_outputs_identical_with_and_without_other_tasks(tiny_model, image) -> None:
    with torch.no_grad():
        alone = tiny_model(image, ["lanes"])["lanes"]
        together = tiny_model(image)
        reordered = tiny_model(image, ["drivable", "lanes", "depth", "segmentation"])
    assert torch.equal(alone, together["lanes"])
    for name in together:
        assert torch.equal(together[name], reordered[name]), name


def test_adding_and_removing_a_task_leaves_others_bit_identical(tiny_model, image) -> None:
    with torch.no_grad():
        before = tiny_model(image)
        head = tiny_model.add_task(TaskConfig(name="corridor", kind="mask"))
        with torch.no_grad():
            for p in head.parameters():  # an arbitrary, non-trivial new task
                p.add_(torch.randn_like(p) * 0.1)
        during = tiny_model(image)
        tiny_model.remove_task("corridor")
        after = tiny_model(image)
    assert "corridor" in during and during["corridor"].shape == (1, 2, 256, 512)
    for name, out in before.items():
        assert torch.equal(out, during[name]), name
        assert torch.equal(out, after[name]), name


def test_tasks_differ_from_each_other(tiny_model, image) -> None:
    """Guard against a degenerate branch: two tasks with the same decoder width but different
    prompts must produce different stage features."""
    from perception.models.tadformer import tadformer_branch

    with torch.no_grad():
        feats, traces = tiny_model.encoder(image, trace=True)
        a = tadformer_branch(tiny_model.encoder, feats, traces,
                             tiny_model.tasks["drivable"].prompt, tiny_model.groups["base"])
        b = tadformer_branch(tiny_model.encoder, feats, traces,
                             tiny_model.tasks["lanes"].prompt, tiny_model.groups["base"])
    assert not torch.allclose(a[0], b[0])


def test_fusion_task_reads_sources_without_changing_them(tiny_model, image) -> None:
    with torch.no_grad():
        before = tiny_model(image)
        tiny_model.add_task(TaskConfig(name="corridor", kind="mask"),
                            sources=("segmentation", "drivable", "lanes"))
        out = tiny_model(image)
    assert out["corridor"].shape == (1, 2, 256, 512)
    for name in before:
        assert torch.equal(before[name], out[name])
