"""Node parameters (declared from a dataclass, validated on set), the adapters-directory watcher and
the ego-lane path, with real rclpy but no inference (issue 7, items 2 and 3)."""
from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from perception.errors import ConfigError  # noqa: E402
from ros2_nodes import params as node_params  # noqa: E402
from ros2_nodes import qos  # noqa: E402
from ros2_nodes.adapters_watch import AdaptersWatcher, scan_bundles  # noqa: E402
from ros2_nodes.params import NodeParams, ParamBinding, parameter_defaults, params_from_flat  # noqa: E402
from ros2_nodes.perception_node import PerceptionNode, ego_lane_centre  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def ctx():
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(context=context, domain_id=random.randint(1, 100))
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def node(ctx):
    n = Node(f"params_{time.monotonic_ns()}", context=ctx)
    yield n
    n.destroy_node()


def test_defaults_are_the_measured_qos():
    d = parameter_defaults()
    assert d["qos.reliability"] == qos.DEFAULT_CAMERA_RELIABILITY
    assert d["qos.depth"] == qos.DEFAULT_CAMERA_DEPTH
    assert d["qos.output_depth"] == qos.DEFAULT_OUTPUT_DEPTH
    assert node_params.RELIABILITIES == qos.CAMERA_RELIABILITY_CHOICES
    assert d["tasks"] == ("*",) and d["input.transport"] == "raw"


def test_declared_once_with_descriptions_and_read_only(node):
    binding = ParamBinding(node)
    assert binding.current == NodeParams()
    declared = set(node._parameters)  # noqa: SLF001 - the node's own parameter table
    assert set(parameter_defaults()) <= declared
    for name in parameter_defaults():
        desc = node.describe_parameter(name)
        assert desc.description, name
    assert node.describe_parameter("backend").read_only
    assert "one of: auto, torch" in node.describe_parameter("backend").additional_constraints
    assert not node.describe_parameter("tasks").read_only
    assert node.describe_parameter("qos.depth").integer_range[0].from_value == 1


def test_on_set_validation_refuses_with_reason(node):
    binding = ParamBinding(node)
    seen = []
    binding.add_listener(lambda changed, cfg: seen.append((changed, cfg.tasks)))
    bad = {
        "tasks": ["*", "corridor"],  # '*' must stand alone
        "color_blend": 1.5,  # outside [0, 1] (doubles are range-checked by the dataclass)
        "backend": "torch",  # read-only
    }
    for name, value in bad.items():
        (result,) = node.set_parameters([Parameter(name, value=value)])
        assert not result.successful, name
        assert result.reason, name
    assert binding.current.tasks == ("*",)
    (ok,) = node.set_parameters([Parameter("tasks", value=["segmentation", "corridor"])])
    assert ok.successful, ok.reason
    (ok,) = node.set_parameters([Parameter("color_blend", value=0)])  # an int for a double
    assert ok.successful and binding.current.color_blend == 0.0
    assert seen[0] == ({"tasks"}, ("segmentation", "corridor"))


def test_params_from_file_values_and_errors():
    p = params_from_flat({"input.transport": "compressed", "input.topic": "/cam/image_raw",
                          "input_size": [128, 256]})
    assert p.input.resolved_topic == "/cam/image_raw/compressed" and p.network_size == (128, 256)
    with pytest.raises(ConfigError, match="unknown parameters .*'input.topc'"):
        params_from_flat({"input.topc": "x"})
    with pytest.raises(ConfigError, match="input_size must be"):
        params_from_flat({"input_size": [0, 256]})
    with pytest.raises(ConfigError, match="valid values: raw, compressed"):
        params_from_flat({"input.transport": "theora"})


def test_missing_model_is_a_clear_error(ctx, monkeypatch, tmp_path):
    monkeypatch.setattr(node_params, "DEFAULT_MODEL_PATH", tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match="parameter 'model' is empty .* does not exist"):
        PerceptionNode(f"nomodel_{time.monotonic_ns()}", context=ctx)
    with pytest.raises(ConfigError, match="does not exist"):
        PerceptionNode(f"nomodel_{time.monotonic_ns()}", context=ctx,
                       parameter_overrides=[Parameter("model", value=str(tmp_path / "x.safetensors"))])


def test_unknown_task_at_startup_lists_what_exists(ctx, tmp_path):
    from perception.training.model_file import save_model
    from tests.runtime.conftest import make_model

    model = save_model(make_model(), tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match=r"tasks: unknown \['corridor'\]; the model has \['segmentation'"):
        PerceptionNode(f"badtasks_{time.monotonic_ns()}", context=ctx, parameter_overrides=[
            Parameter("model", value=str(model)), Parameter("tasks", value=["segmentation", "corridor"])])


def test_adapters_watcher_debounces_and_reports(tmp_path):
    from perception.config import TaskConfig
    from perception.training.bundle import save_bundle
    from tests.runtime.conftest import make_model

    model = make_model()
    model.add_task(TaskConfig(name="corridor", kind="mask"))
    src = save_bundle(model, "corridor", tmp_path / "src" / "corridor.tadtask")
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / ".corridor.tadtask.x.tmp").mkdir()  # a write in progress: never a bundle
    (adapters / "notes.txt").write_text("not a bundle")
    watcher = AdaptersWatcher(adapters)
    assert not watcher.poll()
    shutil.copytree(src, adapters / "corridor.tadtask")
    assert not watcher.poll()  # seen once: may still be copying
    changes = watcher.poll()
    assert [b.name for b in changes.added] == ["corridor"] and not changes.changed
    weights = adapters / "corridor.tadtask" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")  # edited in place
    assert not watcher.poll()
    assert [b.name for b in watcher.poll().changed] == ["corridor"]
    shutil.rmtree(adapters / "corridor.tadtask")
    assert not watcher.poll()
    assert watcher.poll().removed == ["corridor"]
    assert scan_bundles(adapters) == {} and scan_bundles("") == {}


def test_ego_lane_centre():
    xs = np.arange(2.0, 30.0, 1.0)
    right = np.column_stack([xs, np.full_like(xs, -1.8), np.zeros_like(xs)])
    left = np.column_stack([xs + 3.0, np.full_like(xs, 1.6), np.zeros_like(xs)])
    far_left = np.column_stack([xs, np.full_like(xs, 5.2), np.zeros_like(xs)])
    centre = ego_lane_centre([right, left, far_left])
    assert centre[0, 0] == 5.0 and centre[-1, 0] == 29.0
    np.testing.assert_allclose(centre[:, 1], -0.1)
    assert ego_lane_centre([right]) is None and ego_lane_centre([]) is None


def test_default_model_path_is_in_the_package():
    assert node_params.DEFAULT_MODEL_PATH.parts[-4:] == ("perception", "assets", "default",
                                                         "model.safetensors")
    assert Path(node_params.__file__).parent.name == "ros2_nodes"


def test_tadp_node_checks_its_arguments(tmp_path, capsys):
    from perception.cli import main

    assert main(["node", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "params file" in capsys.readouterr().err
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    assert main(["node", "--params", str(params), "-r", "image=/cam"]) == 2
    assert "is not FROM:=TO" in capsys.readouterr().err
