"""What the two saved artifacts share: task bundles (``bundle.py``) and the full-model file
(``model_file.py``). One format version, plain values for their YAML/JSON manifests, and one way
to list tensors that do not fit."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from perception.training.fingerprint import dtype_name

__all__ = ["FORMAT_VERSION", "plain", "is_int", "counted", "shortened", "tensor_problems"]

FORMAT_VERSION = 1
_SHOWN = 6  # problems of one kind listed before "+N more"


def plain(obj: Any) -> Any:
    """Mappings and sequences as dicts (str keys) and lists, all the way down (for YAML/JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def is_int(v: Any) -> bool:
    """An int that is not a bool (YAML reads ``true`` as one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def counted(items: list, noun: str) -> str:
    """``"3 missing tensors"``."""
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def shortened(items: list[str], n: int = _SHOWN) -> str:
    """The first ``n`` items and how many more."""
    head = ", ".join(items[:n])
    return head + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def tensor_problems(expected: Mapping[str, tuple[list[int], str]],
                    tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and wrongly shaped/typed tensors against ``{key: (shape, dtype)}``."""
    out = []
    if missing := sorted(set(expected) - set(tensors)):
        out.append(f"{counted(missing, 'missing tensor')}: {shortened(missing)}")
    if unexpected := sorted(set(tensors) - set(expected)):
        out.append(f"{counted(unexpected, 'unexpected tensor')}: {shortened(unexpected)}")
    wrong = []
    for k in sorted(set(expected) & set(tensors)):
        shape, dtype = expected[k]
        got = (list(tensors[k].shape), dtype_name(tensors[k].dtype))
        if got != (shape, dtype):
            wrong.append(f"{k} is {got[0]} {got[1]}, expected {shape} {dtype}")
    if wrong:
        out.append(f"{counted(wrong, 'tensor')} with the wrong shape/dtype: {shortened(wrong)}")
    return out
