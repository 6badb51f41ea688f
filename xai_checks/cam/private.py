"""A private copy of the user's model in another memory format, rebuilt when the model changes."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["PrivateCopy"]


def _fingerprint(model: nn.Module) -> tuple[object, ...]:
    """What identifies the model's current state cheaply: its modules, and every parameter's and
    buffer's identity, storage, shape and autograd version counter (bumped by every in-place
    write: an optimiser step, ``load_state_dict``, ``reset_parameters``, ``p.copy_()``)."""
    tensors = [*model.parameters(), *model.buffers()]
    return (
        tuple(id(m) for m in model.modules()),
        tuple((id(t), t.data_ptr(), tuple(t.shape), t._version) for t in tensors),
    )


class PrivateCopy:
    """``get()`` returns a deep copy of ``model`` converted to ``memory_format``.

    The user's model is only read (deep-copied); its parameters, buffers, memory format, flags and
    hooks are never touched. The copy is cached and rebuilt when the model's fingerprint changes.
    A write that bypasses autograd's version counter (``p.data.normal_()``) is not detected: call
    :meth:`refresh` after one.
    """

    def __init__(self, model: nn.Module, *, memory_format: torch.memory_format) -> None:
        self.model = model
        self.memory_format = memory_format
        self._copy: nn.Module | None = None
        self._fingerprint: tuple[object, ...] | None = None

    def refresh(self) -> None:
        """Forget the cached copy; the next :meth:`get` copies the model again."""
        self._copy = None
        self._fingerprint = None

    def get(self) -> nn.Module:
        fingerprint = _fingerprint(self.model)
        if self._copy is None or fingerprint != self._fingerprint:
            try:
                clone = copy.deepcopy(self.model)
            except Exception as exc:  # any failure means: cannot copy
                raise TypeError(
                    f"memory_format={self.memory_format} needs a private copy of the model, but "
                    f"{type(self.model).__name__} cannot be deep-copied: {exc}"
                ) from exc
            self._copy = clone.to(memory_format=self.memory_format)
            self._fingerprint = fingerprint
        return self._copy
