"""A small replay world shared by the replay and demo tests: a tiny model (64x128 input, adapters
moved off their zero init) saved with ``save_model``, a synthetic drive as MCAP and sqlite3 bags
(and a JPEG-compressed one), and the same drive as an image dataset (``tadp synth dataset --fps``
with the same seed, depth as float32 .npy so labels are bit-identical to the bag's 32FC1 ground
truth). Built once per session; other test modules import the fixtures from here (pytest's default
``prepend`` import mode puts this folder on ``sys.path``)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from perception.config import load_config
from perception.data.synthetic import SynthConfig, write_dataset
from perception.data.synthetic.bag_writer import write_bag
from perception.models.network import MultiTaskNet
from perception.training.model_file import save_model

SIZE = (64, 128)  # model input and synthetic frame size: small keeps the tests fast on 2 cores
FRAMES, FPS, SEED = 6, 10.0, 5


@dataclass
class ReplayWorld:
    model: Path  # save_model file
    bags: dict[str, Path]  # "mcap" / "sqlite3" / "compressed" -> bag directory
    dataset: Path  # the same frames as a synthetic dataset


def tiny_model(seed: int = 0) -> MultiTaskNet:
    torch.manual_seed(seed)
    model = MultiTaskNet(load_config("tiny").replace(input_size=list(SIZE))).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name or "prompt_gates" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    # Depth follows each frame's camera (dataset K, bag CameraInfo): every path scores that way.
    model.update_task("depth", focal_px=60.0)
    return model


_WORLD: list[ReplayWorld] = []  # one per session, whichever module asks first


@pytest.fixture(scope="session")
def replay_world(tmp_path_factory: pytest.TempPathFactory) -> ReplayWorld:
    if _WORLD:
        return _WORLD[0]
    root = tmp_path_factory.mktemp("replay_world")
    model = save_model(tiny_model(), root / "model.safetensors")
    cfg = SynthConfig(height=SIZE[0], width=SIZE[1])
    bags = {storage: write_bag(root / f"bag_{storage}", FRAMES, FPS, storage=storage, seed=SEED,
                               config=cfg) for storage in ("mcap", "sqlite3")}
    bags["compressed"] = write_bag(root / "bag_compressed", FRAMES, FPS, compressed=True,
                                   seed=SEED, config=cfg)
    dataset = write_dataset(root / "dataset", FRAMES, seed=SEED, config=cfg, fps=FPS,
                            depth_format="npy")
    _WORLD.append(ReplayWorld(model, bags, dataset))
    return _WORLD[0]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads per process are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bag_and_dataset_hold_the_same_frames(replay_world: ReplayWorld, one_thread: None) -> None:
    """The premise of the metric-parity tests: same uint8 frames, same labels (lanes as 0/1)."""
    import numpy as np

    from perception.data.readers import SyntheticDataset
    from perception.evaluation.bag_frames import bag_samples

    dataset = SyntheticDataset(replay_world.dataset)
    for storage in ("mcap", "sqlite3"):
        samples = bag_samples(replay_world.bags[storage])
        assert len(samples) == len(dataset) == FRAMES
        for from_bag, from_files in zip(samples, dataset, strict=True):
            assert from_bag["meta"]["stamp_ns"] == from_files["meta"]["stamp_ns"]
            for key in ("image", "segmentation", "depth", "drivable", "lanes", "lane_instances",
                        "corridor"):
                assert from_bag[key].dtype == from_files[key].dtype, key
                np.testing.assert_array_equal(from_bag[key], from_files[key], err_msg=key)
            assert set(np.unique(from_bag["lanes"])) <= {0, 1, 255}
