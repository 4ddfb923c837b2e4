"""Per-member architecture (hidden widths, depth, activation) and the masks that realise it in one batch.

The population's parameters are laid out for its widest and deepest member. A member uses the first
`widths[p, l]` units of layer l and the first `n_layers[p]` layers; the masks below make the padded
batch compute exactly what each member's narrow network computes, so architecture mutation never
splits the population's parameters, optimiser state or selection.

Buckets: when members' architectures differ (64 beside 96 units, or one member a layer deeper), the
padded batch makes every member pay for the widest and deepest. The MLP then runs its members in a
few buckets of similar shape (at most `net.width_buckets`), each bucket one batched computation cut
to its own widest and deepest member, reading blocks of the same flat parameters. The buckets are a
function of the architecture only, rebuilt with the masks whenever an architecture changes
(generation boundaries), so they hold no state of their own: checkpoints, selection and resume
never see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evorl_cli.config import ACTIVATIONS
from evorl_cli.nets.functional import tanh

ACTIVATION_FNS = {
    "relu": torch.relu,
    "tanh": tanh,  # faster CPU forward, same values (see nets/functional.py)
    "elu": F.elu,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
    "silu": F.silu,
}
assert set(ACTIVATION_FNS) == set(ACTIVATIONS)


@dataclass
class Architecture:
    """Host-side architecture of every member: `widths[p, l]` (0 = layer off) and activation index."""

    widths: np.ndarray  # [P, max_layers] int64 MLP widths; active layers form a prefix
    activation: np.ndarray  # [P] int64 index into ACTIVATIONS
    hidden: np.ndarray  # [P] int64 recurrent state size (0: no recurrent core)

    @classmethod
    def uniform(cls, size: int, hidden_sizes: list[int], max_layers: int, activation: str,
                hidden: int = 0) -> "Architecture":
        widths = np.zeros((size, max_layers), dtype=np.int64)
        widths[:, : len(hidden_sizes)] = hidden_sizes
        acts = np.full(size, ACTIVATIONS.index(activation), dtype=np.int64)
        return cls(widths, acts, np.full(size, hidden, dtype=np.int64))

    @property
    def size(self) -> int:
        return self.widths.shape[0]

    @property
    def n_layers(self) -> np.ndarray:
        return (self.widths > 0).sum(axis=1)

    def gather(self, idx: np.ndarray) -> "Architecture":
        return Architecture(self.widths[idx].copy(), self.activation[idx].copy(), self.hidden[idx].copy())

    def num_weights(self, in_dim: int) -> np.ndarray:
        """[P] weights of each member's MLP (and recurrent core) reading `in_dim` features: the size
        that selection prefers smaller of at equal fitness, and what a member costs to run."""
        fan_in = np.where(self.hidden > 0, self.hidden, in_dim)
        total = 4 * self.hidden * (in_dim + self.hidden)  # an LSTM's four gates (a GRU's three: close enough)
        for layer in range(self.widths.shape[1]):
            width = self.widths[:, layer]
            total = total + fan_in * width
            fan_in = np.where(width > 0, width, fan_in)
        return total

    def hidden_sizes(self, p: int) -> list[int]:
        return [int(w) for w in self.widths[p] if w > 0]

    def activation_name(self, p: int) -> str:
        return ACTIVATIONS[int(self.activation[p])]

    def describe(self, p: int) -> str:
        core = f"rnn{int(self.hidden[p])}+" if self.hidden[p] else ""
        return core + "x".join(str(w) for w in self.hidden_sizes(p)) + " " + self.activation_name(p)

    def compile(self, device: torch.device, width: int, depth: int, towers: int = 1,
                max_buckets: int = 1, in_dim: int = 0) -> "ArchMasks":
        """Masks for a parameter layout of `width` x `depth` (at least the widest/deepest member),
        for `towers` copies of the population stacked on the member axis (actor and critic), with
        the MLP (reading `in_dim` features) run in at most `max_buckets` buckets (`member_buckets`)."""
        arch = self if towers == 1 else self.gather(np.tile(np.arange(self.size), towers))
        groups = member_buckets(arch.widths, in_dim, max_buckets)
        masks = ArchMasks.build(arch, device, width, depth)
        if len(groups) > 1:
            masks.buckets = [Bucket.build(arch, members, device) for members in groups]
        return masks


# A split must save at least this share of the population's MLP arithmetic to be worth a bucket's
# own ops (its matmul, activation, masks and gathers per layer, whatever its size). Below
# `net.width_buckets` buckets nearly every difference of shape clears it: one member a layer deeper
# or 96 units beside 64 costs everyone else 50-90% more arithmetic in one padded batch.
MIN_SAVING = 0.05


def member_buckets(widths: np.ndarray, in_dim: int, max_buckets: int) -> list[np.ndarray]:
    """Members (indices, ascending) grouped into at most `max_buckets` buckets by shape.

    Each distinct (depth, widest layer) starts as its own bucket. A bucket costs its members' padded
    arithmetic: every member runs the bucket's deepest and widest net, `in_dim x W + (D - 1) x W^2`
    multiply-adds per sample. Buckets then merge pairwise, cheapest merge first, while there are
    more than `max_buckets` or the cheapest merge adds under `MIN_SAVING` of the total. Buckets come
    ordered by width, then depth. One bucket (everyone) when the shapes agree or `max_buckets` is 1.
    """
    depth, widest = (widths > 0).sum(axis=1), widths.max(axis=1)
    shapes, shape_of = np.unique(np.stack([depth, widest], axis=1), axis=0, return_inverse=True)
    shape_of = shape_of.reshape(-1)
    count = np.bincount(shape_of, minlength=len(shapes))

    # Per bucket: members, deepest, widest (float: costs reach 1e12 and only compare), its shapes.
    n, d, w = count.astype(float), shapes[:, 0].astype(float), shapes[:, 1].astype(float)
    members = [[k] for k in range(len(shapes))]
    while len(members) > 1:
        own = n * (in_dim * w + (d - 1) * w * w)
        # Every pair's merge at once: what the merged bucket costs beyond its two parts.
        md, mw = np.maximum.outer(d, d), np.maximum.outer(w, w)
        added = np.add.outer(n, n) * (in_dim * mw + (md - 1) * mw * mw) - np.add.outer(own, own)
        added[np.tril_indices(len(members))] = np.inf
        i, j = np.unravel_index(np.argmin(added), added.shape)
        if len(members) <= max(max_buckets, 1) and added[i, j] >= MIN_SAVING * own.sum():
            break
        n[i], d[i], w[i] = n[i] + n[j], md[i, j], mw[i, j]
        members[i] += members.pop(j)
        n, d, w = (np.delete(x, j) for x in (n, d, w))
    order = np.lexsort((d, w))  # by width, then depth
    return [np.flatnonzero(np.isin(shape_of, members[k])) for k in order]


@dataclass
class ArchMasks:
    """Device tensors for the forward pass, rebuilt only when an architecture changes.

    `width` and `depth` are the capacity the population's parameters are laid out for: normally the
    widest and deepest member's, so room up to net.max_width/max_layers costs nothing until used.
    """

    depth: int
    width: int
    unit_mask: list[torch.Tensor | None]  # per layer: [P, 1, width] float, or None when no unit is masked
    layer_on: list[torch.Tensor | None]  # per layer: [P, 1, 1] bool, or None when every member has it
    # (activation, member indices); the first, the most common, has None: it runs on every row
    activation_groups: list[tuple[str, torch.Tensor | None]]
    buckets: list["Bucket"] | None = None  # buckets of members the MLP runs apart (None: one padded batch)

    @classmethod
    def build(cls, arch: Architecture, device: torch.device, width: int, depth: int) -> "ArchMasks":
        units = np.arange(width)
        unit_mask: list[torch.Tensor | None] = []
        layer_on: list[torch.Tensor | None] = []
        for layer in range(depth):
            widths = arch.widths[:, layer]
            on = widths > 0
            # Skipping all-ones masks matters: on small nets every op costs more than its arithmetic.
            full = (widths[on] == width).all()
            mask = (units[None, :] < widths[:, None]).astype(np.float32)
            unit_mask.append(None if full else torch.as_tensor(mask, device=device).unsqueeze(1))
            layer_on.append(None if on.all() else torch.as_tensor(on, device=device).view(-1, 1, 1))
        present, counts = np.unique(arch.activation, return_counts=True)
        # The most common activation first: it runs on every row in one op, and only the other
        # groups' rows are gathered and written over (see `_grouped`).
        order = np.argsort(-counts, kind="stable")
        groups = [(ACTIVATIONS[int(present[order[0]])], None)]
        groups += [(ACTIVATIONS[int(a)], torch.as_tensor(np.flatnonzero(arch.activation == a), device=device))
                   for a in present[order[1:]]]
        return cls(depth, width, unit_mask, layer_on, groups)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Apply each member's own activation (one op when the population agrees). With several,
        each function runs on its own members' rows only (`_grouped`)."""
        if len(self.activation_groups) == 1:
            return ACTIVATION_FNS[self.activation_groups[0][0]](z)
        if torch.is_grad_enabled() and z.requires_grad:
            return _GroupedActivation.apply(z, self.activation_groups)
        return _grouped(z, self.activation_groups)


@dataclass
class Bucket:
    """Members of one bucket (rows of the batch) and the masks of their own, narrower batch."""

    members: torch.Tensor  # [P_b] long, ascending
    width: int  # the bucket's widest layer
    depth: int  # the bucket's deepest member
    masks: ArchMasks

    @classmethod
    def build(cls, arch: Architecture, members: np.ndarray, device: torch.device) -> "Bucket":
        own = arch.gather(members)
        width, depth = int(own.widths.max()), int(own.n_layers.max())
        return cls(torch.as_tensor(members, device=device), width, depth, ArchMasks.build(own, device, width, depth))


def _grouped(z: torch.Tensor, groups: list[tuple[str, torch.Tensor | None]]) -> torch.Tensor:
    """Rows of `z` through their group's activation: the first (most common) activation on every
    row in one op, then each other group's rows gathered, activated and written over it. Gathering
    every group instead costs three passes over the whole tensor where this costs about one plus
    three over the minority rows (the update's [P, batch, width] activations are memory-bound)."""
    out = ACTIVATION_FNS[groups[0][0]](z)
    for name, members in groups[1:]:
        out.index_copy_(0, members, ACTIVATION_FNS[name](z.index_select(0, members)))
    return out


# d activation / d input from the input z and the output y, as torch's own backward kernels compute it.
_aten = torch.ops.aten
ACTIVATION_GRADS = {
    "relu": lambda g, z, y: _aten.threshold_backward(g, y, 0),
    "tanh": lambda g, z, y: _aten.tanh_backward(g, y),
    "elu": lambda g, z, y: _aten.elu_backward(g, 1.0, 1, 1.0, True, y),
    "gelu": lambda g, z, y: _aten.gelu_backward(g, z),
    "leaky_relu": lambda g, z, y: _aten.leaky_relu_backward(g, z, 0.01, False),
    "silu": lambda g, z, y: _aten.silu_backward(g, z),
}
assert set(ACTIVATION_GRADS) == set(ACTIVATIONS)


class _GroupedActivation(torch.autograd.Function):
    """`_grouped` with a backward of the same shape: each group's rows through that function's
    derivative, written back into one gradient. (Autograd through the gathers and a concatenation
    fills a full-size zero tensor per group and adds them up: several passes over the largest
    activations of every layer.)"""

    @staticmethod
    def forward(ctx, z: torch.Tensor, groups: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        out = _grouped(z, groups)
        ctx.groups = groups
        ctx.save_for_backward(z, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, out = ctx.saved_tensors
        dz = ACTIVATION_GRADS[ctx.groups[0][0]](grad, z, out)  # the most common on every row, as forward
        for name, members in ctx.groups[1:]:
            d_rows = ACTIVATION_GRADS[name](grad.index_select(0, members), z.index_select(0, members),
                                            out.index_select(0, members))
            dz.index_copy_(0, members, d_rows)
        return dz, None
