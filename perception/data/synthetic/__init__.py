"""Synthetic driving world with exact ground truth: scene generator, renderer, sequences, dataset
and rosbag2 writers, preview sheets. See ``docs/synthetic_world.md``."""
from __future__ import annotations

from perception.data.synthetic.bag_writer import write_bag
from perception.data.synthetic.config import RandomizationConfig, SynthConfig, parse_size
from perception.data.synthetic.dataset_writer import write_dataset
from perception.data.synthetic.preview import write_preview
from perception.data.synthetic.renderer import Frame, render
from perception.data.synthetic.sequence import iter_sequence
from perception.data.synthetic.world import World, generate_world

__all__ = [
    "SynthConfig",
    "RandomizationConfig",
    "parse_size",
    "World",
    "generate_world",
    "Frame",
    "render",
    "iter_sequence",
    "write_dataset",
    "write_bag",
    "write_preview",
]
