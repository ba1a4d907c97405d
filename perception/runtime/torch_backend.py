"""PyTorch eager backend: the reference every other backend is compared with."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from perception.runtime.backend import Backend, SlotRunner
from perception.runtime.slots import SlotProgram, TrunkProgram

__all__ = ["TorchBackend"]


class _TorchSlot(SlotRunner):
    def __init__(self, program: SlotProgram) -> None:
        self.program, self.key = program.eval(), program.key

    def prepare(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [w.detach().clone() for w in weights]

    def run(self, trunk: Any, sources: Sequence[Any], weights: Any) -> tuple[Any, list[Any]]:
        flat_src = [f for feats in sources for f in feats]
        with torch.inference_mode():
            out = self.program.features_and_output(*trunk, *flat_src, *weights)
        return out[0], list(out[1:])


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.precision != "fp32":
            from perception.errors import BackendError

            raise BackendError(f"torch backend runs fp32 only, got precision {self.precision!r}")
        torch.set_num_threads(self.threads)
        self._trunk: TrunkProgram | None = None

    def compile_trunk(self, program: TrunkProgram, example: torch.Tensor, fingerprint: str) -> None:
        self._trunk = program.eval()

    def compile_slot(self, program: SlotProgram, example_args: Sequence[torch.Tensor],
                     fingerprint: str) -> SlotRunner:
        return _TorchSlot(program)

    def run_trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return self._trunk(images)
