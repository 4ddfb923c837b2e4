"""Where each named parameter lives inside a member's flat parameter vector.

Every member's parameters are one row of a `[P, N]` tensor. Keeping them flat makes the
population-wide operations single tensor ops: Adam, per-member grad-norm clipping, selection
(`index_select`), parameter noise and checkpointing all touch one tensor instead of dozens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Slot:
    start: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def end(self) -> int:
        return self.start + self.size


class ParamLayout:
    """An ordered map name -> (offset, shape) of one member's parameters."""

    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}
        self.size = 0

    def add(self, name: str, shape: tuple[int, ...]) -> None:
        if name in self.slots:
            raise ValueError(f"parameter {name} declared twice")
        slot = Slot(self.size, tuple(shape))
        self.slots[name] = slot
        self.size = slot.end

    def view(self, flat: torch.Tensor, name: str) -> torch.Tensor:
        """`flat[..., slot]` shaped as the parameter, keeping any leading (population) dims."""
        slot = self.slots[name]
        return flat[..., slot.start:slot.end].view(*flat.shape[:-1], *slot.shape)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.view(flat, name) for name in self.slots}

    def names(self, prefix: str) -> list[str]:
        return [n for n in self.slots if n.startswith(prefix)]


def relayout(flat: torch.Tensor, old: ParamLayout, new: ParamLayout) -> torch.Tensor:
    """`flat` [P, old.size] re-laid out as [P, new.size]: each parameter both layouts hold keeps the
    region they share (leading rows and columns); everything else is zero. Used when the population's
    capacity grows (padding) or shrinks (dropping entries no member uses)."""
    out = flat.new_zeros(flat.shape[0], new.size)
    for name in new.slots:
        if name in old.slots:
            src, dst = old.view(flat, name), new.view(out, name)
            region = (slice(None),) + tuple(slice(0, min(a, b)) for a, b in zip(src.shape[1:], dst.shape[1:]))
            dst[region] = src[region]
    return out
