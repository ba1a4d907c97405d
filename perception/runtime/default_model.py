"""Where the shipped default model and its example task bundles live.

The model is trained on our synthetic world with the README's recipe and committed as safetensors +
YAML manifest. The example bundles add ``corridor`` to it, once as an AdapterFusion bundle and once
as a TADFormer-branch bundle (``docs/peft_study.md`` has how they were trained and how they score);
they are bound to this model's trunk fingerprint."""
from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_MODEL", "EXAMPLE_BUNDLES", "default_model_path", "example_bundle"]

_ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL = _ASSETS / "default" / "model.safetensors"
EXAMPLE_BUNDLES = _ASSETS / "bundles"  # <adapter>/corridor.tadtask


def default_model_path() -> Path | None:
    """The default model file, or None when this checkout has none yet."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def example_bundle(adapter: str = "fusion", task: str = "corridor") -> Path:
    """The shipped example bundle of ``task`` trained with ``adapter`` (``fusion`` | ``tadformer``).

    Raises:
        FileNotFoundError: no such example ships; the message lists the ones that do.
    """
    path = EXAMPLE_BUNDLES / adapter / f"{task}.tadtask"
    if not path.is_dir():
        have = sorted(str(p.relative_to(EXAMPLE_BUNDLES)) for p in EXAMPLE_BUNDLES.glob("*/*.tadtask"))
        raise FileNotFoundError(f"no example bundle {adapter}/{task}.tadtask; shipped: {have or 'none'}")
    return path
