"""Where the shipped default model lives (trained by ``scripts/train_default.sh`` on our synthetic
world and committed as safetensors + YAML manifest)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_MODEL", "default_model_path"]

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default" / "model.safetensors"


def default_model_path() -> Path | None:
    """The default model file, or None when this checkout has none yet."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None
