"""The inference network (trunk + 4 task branches + decoders, tiny config, 256x512) exports with
torch.export and to ONNX; onnxruntime matches torch.

The ONNX test uses the TorchScript exporter at opset 17: the dynamo exporter also works on this
graph (checked by hand: 5,882 nodes after its optimiser) but its optimiser takes minutes on two
cores for the 4-task graph, too slow for CI; ONNX Runtime runs both exports at the same speed
(shared/research/cpu_perf.md)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch


class _Inference(torch.nn.Module):
    """Tuple outputs in task order, the shape ONNX/TensorRT consume."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.names = model, model.task_names()

    def forward(self, x):
        out = self.model(x)
        return tuple(out[n] for n in self.names)


@pytest.fixture
def inference(tiny_model):
    tiny_model.merge_lora()
    return _Inference(tiny_model).eval()


def test_torch_export(inference, image) -> None:
    ep = torch.export.export(inference, (image,))
    with torch.no_grad():
        ref = inference(image)
        got = ep.module()(image)
    assert len(got) == 4
    for a, b in zip(ref, got, strict=False):
        assert (a - b).abs().max() < 1e-5


def test_onnx_export_matches_onnxruntime(inference, image, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(inference, (image,), str(path), input_names=["image"],
                          output_names=inference.names, opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"image": image.numpy()})
    with torch.no_grad():
        ref = inference(image)
    for name, a, b in zip(inference.names, ref, outs, strict=False):
        err = np.abs(a.numpy() - b).max()
        assert err < 1e-4, f"{name}: max abs error {err:.2e}"
