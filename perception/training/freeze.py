"""Freeze proof for adapter/fusion training (``tadp train-task``): :class:`FreezeGuard` hashes
every tensor of the model before training and checks afterwards that everything outside the new
task is bit-identical, so a bundle is only written when the trunk and the other tasks provably
did not move."""
from __future__ import annotations

import torch

from perception.errors import PerceptionError
from perception.training.modes import state_checksums

__all__ = ["FreezeError", "FreezeGuard", "owned_prefixes"]


class FreezeError(PerceptionError, RuntimeError):
    """Adapter/fusion training changed (or could change) a tensor outside the trained task."""


def owned_prefixes(task: str) -> tuple[str, ...]:
    """State-dict prefixes that belong to one added task (its head and its own branch group)."""
    return (f"tasks.{task}.", f"groups.{task}.")


class FreezeGuard:
    """Checksums of every tensor before training; :meth:`check` proves only ``task`` changed.

    Example:
        >>> guard = FreezeGuard(model, "corridor")
        >>> trainer.fit()
        >>> report = guard.check()  # raises FreezeError naming every changed frozen tensor
    """

    def __init__(self, model: torch.nn.Module, task: str) -> None:
        self.model, self.task, self.own = model, task, owned_prefixes(task)
        self.before = state_checksums(model)

    def check_trainable(self) -> None:
        """Fail before training if any parameter outside the task would receive gradients."""
        leaks = sorted(n for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith(self.own))
        if leaks:
            raise FreezeError(f"{len(leaks)} parameters outside task {self.task!r} are trainable: "
                              f"{', '.join(leaks[:8])}{' ...' if len(leaks) > 8 else ''}")

    def check(self) -> dict[str, int]:
        """Compare with the checksums taken at construction.

        Returns:
            ``{"frozen_tensors": n, "frozen_changed": 0, "task_tensors": m, "task_changed": k}``.

        Raises:
            FreezeError: a tensor outside the task changed, appeared or disappeared.
        """
        after = state_checksums(self.model)
        frozen = [k for k in self.before if not k.startswith(self.own)]
        changed = sorted(k for k in frozen if after.get(k) != self.before[k])
        appeared = sorted(k for k in after if k not in self.before and not k.startswith(self.own))
        if changed or appeared:
            raise FreezeError(
                f"freeze violated while training task {self.task!r}: {len(changed)} frozen tensors changed "
                f"({', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''})"
                + (f" and {len(appeared)} appeared ({', '.join(appeared[:5])})" if appeared else "")
                + "; the trunk and the other tasks must stay bit-identical")
        own = [k for k in after if k.startswith(self.own)]
        return {"frozen_tensors": len(frozen), "frozen_changed": 0, "task_tensors": len(own),
                "task_changed": sum(after[k] != self.before.get(k) for k in own)}
