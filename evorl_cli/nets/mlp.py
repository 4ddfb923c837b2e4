"""A population of MLP encoders evaluated as batched matmuls over a leading member axis."""

from __future__ import annotations

import math

import torch

from evorl_cli.nets.arch import ArchMasks
from evorl_cli.nets.layout import ParamLayout

HIDDEN_GAIN = math.sqrt(2.0)


def orthogonal(rows: int, cols: int, gain: float, generator: torch.Generator) -> torch.Tensor:
    """An orthogonal `[rows, cols]` block (as `nn.init.orthogonal_`), drawn from `generator`."""
    block = torch.empty(rows, cols)
    torch.nn.init.orthogonal_(block, gain=gain, generator=generator)
    return block


class MLPEncoder:
    """`depth` hidden layers of `width` units; layer 0 reads the observation.

    Parameters are named `{prefix}.w{l}` ([in, width]) and `{prefix}.b{l}` in the layout; `width`
    and `depth` are the population's current capacity (its widest and deepest member).
    Invariant: weights and biases of units or layers a member does not use are exactly zero, so
    enabling them later (mutation) starts from a clean slate and inactive rows never leak into
    active units.
    """

    def __init__(self, prefix: str, in_dim: int, width: int, depth: int, layout: ParamLayout) -> None:
        self.prefix = prefix
        self.in_dim = in_dim
        self.width = width
        self.depth = depth
        for layer in range(depth):
            fan_in = in_dim if layer == 0 else width
            layout.add(f"{prefix}.w{layer}", (fan_in, width))
            layout.add(f"{prefix}.b{layer}", (width,))
        self.layout = layout

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, masks: ArchMasks) -> torch.Tensor:
        """`x`: [P, B, in_dim] -> last active layer's output [P, B, width] (unused units are 0)."""
        h = x
        for layer in range(self.depth):
            w = params[f"{self.prefix}.w{layer}"]
            b = params[f"{self.prefix}.b{layer}"].unsqueeze(1)
            out = masks.activate(torch.baddbmm(b, h, w))
            if masks.unit_mask[layer] is not None:
                out = out * masks.unit_mask[layer]
            on = masks.layer_on[layer]
            # A member without this layer passes its input through, computing the shallower net.
            h = out if on is None else torch.where(on, out, h)
        return h

    # --- per-member surgery used by initialisation and architecture mutation -------------------

    def init_layer(self, row: torch.Tensor, layer: int, fan_in: int, width: int, gen: torch.Generator) -> None:
        """Fresh orthogonal weights for `layer` of one member (`row` is its flat parameter vector)."""
        self.zero_layer(row, layer)
        self.layout.view(row, f"{self.prefix}.w{layer}")[:fan_in, :width] = orthogonal(fan_in, width, HIDDEN_GAIN, gen)

    def zero_layer(self, row: torch.Tensor, layer: int) -> None:
        self.layout.view(row, f"{self.prefix}.w{layer}").zero_()
        self.layout.view(row, f"{self.prefix}.b{layer}").zero_()

    def grow_units(self, row: torch.Tensor, layer: int, fan_in: int, old: int, new: int, gen: torch.Generator) -> None:
        """Switch on units [old, new) of `layer`: fresh incoming weights, zero bias.

        Their outgoing weights are zero (invariant), so the member computes the same function right
        after the mutation and the new units start learning from the next gradient step.
        """
        block = orthogonal(fan_in, new - old, HIDDEN_GAIN, gen)
        self.layout.view(row, f"{self.prefix}.w{layer}")[:fan_in, old:new] = block
        self.layout.view(row, f"{self.prefix}.b{layer}")[old:new] = 0.0

    def shrink_units(self, row: torch.Tensor, layer: int, new: int) -> None:
        """Switch off units [new, max) of `layer`, zeroing what feeds them and what they feed."""
        self.layout.view(row, f"{self.prefix}.w{layer}")[:, new:] = 0.0
        self.layout.view(row, f"{self.prefix}.b{layer}")[new:] = 0.0
        if layer + 1 < self.depth:
            self.layout.view(row, f"{self.prefix}.w{layer + 1}")[new:, :] = 0.0
