"""launch/perception.launch.py and launch/params/default.yaml match the package (issue 7, item 5).

With ``launch``/``launch_ros`` importable the launch file is loaded for real and its Node action
inspected; without them (PyPI wheels, CI) the file is parsed with ``ast``. Either way: the
executable is a console script of setup.py, the default params file exists and every parameter in
it is one the node declares, with the node's defaults, and the real rcl YAML parser reads it.
"""
from __future__ import annotations

import ast
import importlib.util
import random
from pathlib import Path

import pytest
import yaml

from ros2_nodes.params import parameter_defaults, params_from_flat

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "perception.launch.py"
PARAMS = REPO / "launch" / "params" / "default.yaml"


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict(s.replace(" ", "").split("=", 1) for s in scripts)
    raise AssertionError("setup.py has no entry_points")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _default_yaml() -> dict:
    data = yaml.safe_load(PARAMS.read_text())
    ((_, section),) = data.items()
    return _flatten(section["ros__parameters"])


def test_default_params_are_the_declared_parameters_and_defaults():
    values = _default_yaml()
    declared = parameter_defaults()
    assert set(values) == set(declared), set(values) ^ set(declared)
    parsed = params_from_flat(values)  # types and validation as the node applies them
    for name, default in declared.items():
        got = getattr(parsed, name) if "." not in name else \
            getattr(getattr(parsed, name.split(".")[0]), name.split(".")[1])
        assert got == default, (name, got, default)


def test_rcl_parses_the_default_params_file():
    pytest.importorskip("rclpy")
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 100),
               args=["--ros-args", "--params-file", str(PARAMS)])
    try:
        node = Node("perception", context=ctx, automatically_declare_parameters_from_overrides=True)
        got = {name: p.value for name, p in node._parameters.items()}  # noqa: SLF001
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    declared = parameter_defaults()
    builtin = {"use_sim_time", "start_type_description_service"}  # rclpy declares these
    ours = {k: v for k, v in got.items() if k not in builtin}
    assert set(ours) == set(declared)
    params_from_flat(ours)  # rcl's types (e.g. [0, 0] as integer array) are accepted


def _launch_calls() -> tuple[dict, dict[str, str], list[str], list[str]]:
    """From the launch file's AST: Node(...) keywords, DeclareLaunchArgument defaults, the
    LaunchConfiguration names used, and SetEnvironmentVariable names."""
    tree = ast.parse(LAUNCH.read_text())
    consts = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    node_kw, args, used, env = {}, {}, [], []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        name = call.func.id
        if name == "Node":
            node_kw = {k.arg: k.value for k in call.keywords}
        elif name == "DeclareLaunchArgument":
            default = next((k.value for k in call.keywords if k.arg == "default_value"), None)
            args[ast.literal_eval(call.args[0])] = ast.unparse(default) if default else ""
        elif name == "LaunchConfiguration":
            used.append(ast.literal_eval(call.args[0]))
        elif name == "SetEnvironmentVariable":
            env.append(ast.literal_eval(call.args[0]))

    def value(node):
        if isinstance(node, ast.Name) and node.id in consts:
            return consts[node.id]
        return node

    return {k: value(v) for k, v in node_kw.items()}, args, used, env


def test_launch_file_matches_package():
    scripts = _console_scripts()
    try:  # our launch/ directory can shadow the ROS `launch` package as a namespace package
        import launch.actions  # noqa: F401
        import launch_ros.actions  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - needs a ROS installation
        _check_loaded_launch(scripts)
        return
    node_kw, args, used, env = _launch_calls()
    assert node_kw["package"] == "tad_perception"
    assert node_kw["executable"] in scripts
    assert scripts[node_kw["executable"]] == "ros2_nodes.perception_node:main"
    # the params argument defaults to the installed launch/params/default.yaml
    assert "params_file" in args and "'params', 'default.yaml'" in args["params_file"]
    assert PARAMS.is_file()
    assert ast.unparse(node_kw["parameters"]) == "[LaunchConfiguration('params_file')]"
    # every LaunchConfiguration is declared; the Fast DDS profile is set for started processes
    assert set(used) <= set(args), set(used) - set(args)
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in env
    # remappings rename the node's default topic names
    remaps = [ast.literal_eval(t.elts[0]) for t in node_kw["remappings"].elts]
    defaults = parameter_defaults()
    assert defaults["input.topic"] in remaps and defaults["input.camera_info_topic"] in remaps
    assert f"{defaults['input.topic']}/compressed" in remaps
    # setup.py installs both files where the launch file looks for them
    setup = (REPO / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("launch/params/*.yaml")' in setup


def _check_loaded_launch(scripts: dict[str, str]) -> None:  # pragma: no cover - needs launch_ros
    from launch.actions import SetEnvironmentVariable
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert len(nodes) == 1
    assert nodes[0].node_package == "tad_perception" and nodes[0].node_executable in scripts
    assert any(isinstance(e, SetEnvironmentVariable) for e in ld.entities)
    names = {a.name for a in ld.get_launch_arguments()}
    assert {"params_file", "image", "camera_info"} <= names


def test_docs_list_every_parameter():
    doc = (REPO / "docs" / "ros_node.md").read_text()
    missing = [n for n in parameter_defaults()
               if f"`{n}`" not in doc and f"`{n.rsplit('.', 1)[-1]}`" not in doc]
    assert not missing, f"docs/ros_node.md does not describe {missing}"
