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


def linear_init(scheme: str, fan_in: int, cols: int, gain: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights `[fan_in, cols]` and biases `[cols]` for a linear layer reading `fan_in` features.

    `orthogonal`: an orthogonal block scaled by `gain`, zero biases (CleanRL's and SB3's default).
    `uniform`: PyTorch's own `nn.Linear` init, weights and biases drawn from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) whatever the gain (SB3's `ortho_init=False`, which rl-zoo3 tunes some MuJoCo
    presets with: the policy head then starts far from the near-zero mean that gain 0.01 gives).
    """
    if scheme == "orthogonal":
        return orthogonal(fan_in, cols, gain, generator), torch.zeros(cols)
    bound = 1.0 / math.sqrt(fan_in)
    weight = torch.empty(fan_in, cols).uniform_(-bound, bound, generator=generator)
    return weight, torch.empty(cols).uniform_(-bound, bound, generator=generator)


class MLPEncoder:
    """`depth` hidden layers of `width` units; layer 0 reads the observation; a linear head (the
    caller's, e.g. the policy and value heads) reads the last active layer.

    Parameters are named `{prefix}.w{l}` ([in, width]) and `{prefix}.b{l}` in the layout; `width`
    and `depth` are the population's current capacity (its widest and deepest member).
    Invariant: weights and biases of units or layers a member does not use are exactly zero, so
    enabling them later (mutation) starts from a clean slate and inactive rows never leak into
    active units.
    """

    def __init__(self, prefix: str, in_dim: int, width: int, depth: int, layout: ParamLayout,
                 init: str = "orthogonal") -> None:
        self.prefix = prefix
        self.init = init  # linear_init scheme of fresh layers and units
        self.in_dim = in_dim
        self.width = width
        self.depth = depth
        for layer in range(depth):
            fan_in = in_dim if layer == 0 else width
            layout.add(f"{prefix}.w{layer}", (fan_in, width))
            layout.add(f"{prefix}.b{layer}", (width,))
        self.layout = layout

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, masks: ArchMasks,
                head: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`x`: [P, B, in_dim] -> the linear `head` (weight [P, width, n], bias [P, 1, n]) applied
        to the last active layer's output: [P, B, n].

        With buckets (`masks.buckets`), each bucket's members run as their own batch, cut to the
        bucket's width and depth, head included, on blocks of the parameters (`bucket_params`, or
        prepared ones under `{prefix}.buckets`). The head is part of the bucket because the padded
        [P, B, width] features it would otherwise read cost a zero fill and a copy per bucket, and
        a clone of the full-size gradient per bucket backward (half 64-unit and half 256-unit
        members, batch 256: forward and backward 1.52x the midpoint of all-64 and all-256 with
        them, 1.06x without). Only the small [P_b, B, n] outputs are put back in member order
        (`_Assemble`)."""
        if masks.buckets is None:
            return torch.baddbmm(head[1], self._layers(params, x, masks, self.depth), head[0])
        blocks = params.get(f"{self.prefix}.buckets") or self.bucket_params(params, masks, head)
        outs = [torch.baddbmm(block["head.b"], self._layers(block, x.index_select(0, bucket.members),
                                                             bucket.masks, bucket.depth), block["head.w"])
                for block, bucket in zip(blocks, masks.buckets)]
        return _Assemble.apply([b.members for b in masks.buckets], *outs)

    def bucket_params(self, params: dict[str, torch.Tensor], masks: ArchMasks,
                      head: tuple[torch.Tensor, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per bucket, its members' blocks of every layer it runs: `w{l}` [P_b, in, width_b] (layer
        0 reads all `in_dim` features), `b{l}` [P_b, width_b], and of the head: `head.w`
        [P_b, width_b, n], `head.b` [P_b, 1, n]. Differentiable: one backward node per parameter
        writes every bucket's block gradient into one full-size gradient."""
        buckets = masks.buckets
        blocks: list[dict[str, torch.Tensor]] = [{} for _ in buckets]
        cuts = [(params[f"{self.prefix}.w{layer}"], f"{self.prefix}.w{layer}", layer,
                 lambda b, layer=layer: (self.in_dim if layer == 0 else b.width, b.width))
                for layer in range(max(b.depth for b in buckets))]
        cuts += [(params[f"{self.prefix}.b{layer}"], f"{self.prefix}.b{layer}", layer, lambda b: (b.width,))
                 for layer in range(max(b.depth for b in buckets))]
        n = head[0].shape[-1]
        cuts += [(head[0], "head.w", -1, lambda b: (b.width, n)), (head[1], "head.b", -1, lambda b: (1, n))]
        for full, name, layer, shape in cuts:
            runs = [k for k, b in enumerate(buckets) if layer < b.depth]
            cut = _Blocks.apply(full, [buckets[k].members for k in runs], [shape(buckets[k]) for k in runs])
            for k, block in zip(runs, cut):
                blocks[k][name] = block
        return blocks

    def _layers(self, params: dict[str, torch.Tensor], x: torch.Tensor, masks: ArchMasks, depth: int) -> torch.Tensor:
        """The first `depth` layers on one batch of members, `masks` built for that batch."""
        h = x
        for layer in range(depth):
            w = params[f"{self.prefix}.w{layer}"]
            b = params[f"{self.prefix}.b{layer}"].unsqueeze(1)
            out = masks.activate(torch.baddbmm(b, h, w))
            if masks.unit_mask[layer] is not None:
                out = out * masks.unit_mask[layer]
            on = masks.layer_on[layer]
            # A member without this layer passes its input through, computing the shallower net.
            h = out if on is None else torch.where(on, out, h)
        return h

    def prepare(self, params: dict[str, torch.Tensor], masks: ArchMasks,
                head: tuple[torch.Tensor, torch.Tensor]) -> dict[str, list]:
        """For passes without autograd: the bucket blocks made once per change of the parameters
        (copying them at every rollout step would cost more than the narrow matmuls save)."""
        if masks.buckets is None:
            return {}
        return {f"{self.prefix}.buckets": self.bucket_params(params, masks, head)}

    # --- per-member surgery used by initialisation and architecture mutation -------------------

    def init_layer(self, row: torch.Tensor, layer: int, fan_in: int, width: int, gen: torch.Generator) -> None:
        """Fresh weights for `layer` of one member (`row` is its flat parameter vector)."""
        self.zero_layer(row, layer)
        weight, bias = linear_init(self.init, fan_in, width, HIDDEN_GAIN, gen)
        self.layout.view(row, f"{self.prefix}.w{layer}")[:fan_in, :width] = weight
        self.layout.view(row, f"{self.prefix}.b{layer}")[:width] = bias

    def zero_layer(self, row: torch.Tensor, layer: int) -> None:
        self.layout.view(row, f"{self.prefix}.w{layer}").zero_()
        self.layout.view(row, f"{self.prefix}.b{layer}").zero_()

    def grow_units(self, row: torch.Tensor, layer: int, fan_in: int, old: int, new: int, gen: torch.Generator) -> None:
        """Switch on units [old, new) of `layer`: fresh incoming weights and biases.

        Their outgoing weights are zero (invariant), so the member computes the same function right
        after the mutation and the new units start learning from the next gradient step.
        """
        weight, bias = linear_init(self.init, fan_in, new - old, HIDDEN_GAIN, gen)
        self.layout.view(row, f"{self.prefix}.w{layer}")[:fan_in, old:new] = weight
        self.layout.view(row, f"{self.prefix}.b{layer}")[old:new] = bias

    def cut_inputs(self, row: torch.Tensor, new: int) -> None:
        """Layer 0 reads only its first `new` input features (a recurrent core that shrank)."""
        self.layout.view(row, f"{self.prefix}.w0")[new:, :] = 0.0

    def shrink_units(self, row: torch.Tensor, layer: int, new: int) -> None:
        """Switch off units [new, max) of `layer`, zeroing what feeds them and what they feed."""
        self.layout.view(row, f"{self.prefix}.w{layer}")[:, new:] = 0.0
        self.layout.view(row, f"{self.prefix}.b{layer}")[new:] = 0.0
        if layer + 1 < self.depth:
            self.layout.view(row, f"{self.prefix}.w{layer + 1}")[new:, :] = 0.0


class _Blocks(torch.autograd.Function):
    """`full` [R, *dims] -> per bucket, rows `members[k]` cut to the leading `shapes[k]` of each
    trailing dim (contiguous copies). Backward writes each block's gradient into its place in one
    zero gradient of `full`'s shape (autograd through index_select and slicing would fill a
    full-size zero tensor per bucket and per op, and add them up)."""

    @staticmethod
    def forward(ctx, full: torch.Tensor, members: list[torch.Tensor], shapes: list[tuple[int, ...]]):
        ctx.full_shape, ctx.members, ctx.shapes = full.shape, members, shapes
        return tuple(full[(slice(None), *(slice(0, n) for n in shape))].index_select(0, rows)
                     for rows, shape in zip(members, shapes))

    @staticmethod
    def backward(ctx, *grads):
        out = grads[0].new_zeros(ctx.full_shape)
        for rows, shape, grad in zip(ctx.members, ctx.shapes, grads):
            if grad is not None:
                out[(slice(None), *(slice(0, n) for n in shape))].index_copy_(0, rows, grad)
        return out, None, None


class _Assemble(torch.autograd.Function):
    """Bucket outputs `outs[k]` [P_k, B, n] -> one [P, B, n] with bucket k's in rows `members[k]`
    (the buckets partition the rows). Backward hands each bucket its rows of the gradient."""

    @staticmethod
    def forward(ctx, members: list[torch.Tensor], *outs: torch.Tensor) -> torch.Tensor:
        out = outs[0].new_empty(sum(len(m) for m in members), *outs[0].shape[1:])
        for rows, out_k in zip(members, outs):
            out.index_copy_(0, rows, out_k)
        ctx.members = members
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *(grad.index_select(0, rows) for rows in ctx.members))
