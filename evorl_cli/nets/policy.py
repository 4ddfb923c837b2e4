"""Actor-critic network of the whole population: encoder(s), policy head and value head.

`PolicyNet` holds no tensors of its own: parameters come in as the population's flat `[P, N]`
tensor, so the same object serves training, evaluation, selection and checkpoint loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.nets.arch import Architecture, ArchMasks
from evorl_cli.nets.layout import ParamLayout
from evorl_cli.nets.mlp import MLPEncoder, orthogonal

POLICY_HEAD_GAIN = 0.01  # near-uniform initial policy
VALUE_HEAD_GAIN = 1.0


@dataclass(frozen=True)
class ActionSpec:
    """What the policy head must produce: `n` logits (discrete) or an `n`-dim Gaussian mean."""

    discrete: bool
    n: int
    low: np.ndarray | None = None  # continuous bounds, used to clip actions sent to the env
    high: np.ndarray | None = None


class PolicyNet:
    """Actor and critic encoders (separate, or one shared) with linear heads, batched over members.

    `width` x `depth` is the capacity the parameters are laid out for: the population's widest and
    deepest member, not the configured maxima, so compute and optimiser work scale with what the
    members actually use. The population re-lays its tensors out when an architecture changes.
    """

    def __init__(self, obs_dim: int, action: ActionSpec, width: int, depth: int, share_encoder: bool) -> None:
        self.obs_dim = obs_dim
        self.action = action
        self.width = width
        self.depth = depth
        self.share_encoder = share_encoder
        self.layout = ParamLayout()
        make = lambda prefix: MLPEncoder(prefix, obs_dim, width, depth, self.layout)  # noqa: E731
        if share_encoder:
            self.encoders = {"shared": make("shared")}
        else:
            self.encoders = {"actor": make("actor"), "critic": make("critic")}
        self.layout.add("pi.w", (width, action.n))
        self.layout.add("pi.b", (action.n,))
        self.layout.add("v.w", (width, 1))
        self.layout.add("v.b", (1,))
        if not action.discrete:
            self.layout.add("log_std", (action.n,))

    @property
    def num_params(self) -> int:
        return self.layout.size

    def resized(self, width: int, depth: int) -> "PolicyNet":
        return PolicyNet(self.obs_dim, self.action, width, depth, self.share_encoder)

    def forward(self, p: dict[str, torch.Tensor], obs: torch.Tensor, masks: ArchMasks) -> tuple[torch.Tensor, torch.Tensor]:
        """`p`: parameter views (`layout.views(flat)`); `obs` [P, B, obs_dim] ->
        (logits or action mean [P, B, n], value [P, B])."""
        if self.share_encoder:
            h_pi = h_v = self.encoders["shared"].forward(p, obs, masks)
        else:
            h_pi = self.encoders["actor"].forward(p, obs, masks)
            h_v = self.encoders["critic"].forward(p, obs, masks)
        head = torch.baddbmm(p["pi.b"].unsqueeze(1), h_pi, p["pi.w"])
        value = torch.baddbmm(p["v.b"].unsqueeze(1), h_v, p["v.w"]).squeeze(-1)
        return head, value

    def actor_slices(self) -> list[tuple[int, int]]:
        """Flat ranges of the parameters that shape the policy (for parameter-noise mutation)."""
        prefixes = ("shared.", "actor.", "pi.", "log_std")
        return [(s.start, s.end) for name, s in self.layout.slots.items() if name.startswith(prefixes)]

    # --- initialisation and architecture surgery of one member ----------------------------------

    def init_member(self, row: torch.Tensor, arch: Architecture, p: int, action_std_init: float,
                    gen: torch.Generator) -> None:
        """Orthogonal init of member `p`'s active blocks (hidden sqrt 2, policy 0.01, value 1); rest zero."""
        row.zero_()
        sizes = arch.hidden_sizes(p)
        for enc in self.encoders.values():
            fan_in = self.obs_dim
            for layer, width in enumerate(sizes):
                enc.init_layer(row, layer, fan_in, width, gen)
                fan_in = width
        last = sizes[-1]
        self.layout.view(row, "pi.w")[:last] = orthogonal(last, self.action.n, POLICY_HEAD_GAIN, gen)
        self.layout.view(row, "v.w")[:last] = orthogonal(last, 1, VALUE_HEAD_GAIN, gen)
        if not self.action.discrete:
            self.layout.view(row, "log_std")[:] = math.log(action_std_init)

    def grow_units(self, row: torch.Tensor, arch: Architecture, p: int, layer: int, new: int,
                   gen: torch.Generator) -> None:
        """Widen hidden `layer` of member `p` to `new` units without changing its outputs."""
        old = int(arch.widths[p, layer])
        fan_in = self.obs_dim if layer == 0 else int(arch.widths[p, layer - 1])
        for enc in self.encoders.values():
            enc.grow_units(row, layer, fan_in, old, new, gen)

    def shrink_units(self, row: torch.Tensor, arch: Architecture, p: int, layer: int, new: int) -> None:
        """Narrow hidden `layer` of member `p` to `new` units (what they fed is cut too)."""
        for enc in self.encoders.values():
            enc.shrink_units(row, layer, new)
        if layer == int(arch.n_layers[p]) - 1:
            self._cut_head_rows(row, new)

    def add_layer(self, row: torch.Tensor, arch: Architecture, p: int, gen: torch.Generator) -> int:
        """Append a hidden layer as wide as the last one (fresh orthogonal init); returns its width."""
        depth = int(arch.n_layers[p])
        width = int(arch.widths[p, depth - 1])
        for enc in self.encoders.values():
            enc.init_layer(row, depth, width, width, gen)
        return width

    def remove_layer(self, row: torch.Tensor, arch: Architecture, p: int) -> None:
        """Drop member `p`'s last hidden layer; the heads then read the layer before it."""
        depth = int(arch.n_layers[p])
        for enc in self.encoders.values():
            enc.zero_layer(row, depth - 1)
        self._cut_head_rows(row, int(arch.widths[p, depth - 2]))

    def _cut_head_rows(self, row: torch.Tensor, width: int) -> None:
        self.layout.view(row, "pi.w")[width:] = 0.0
        self.layout.view(row, "v.w")[width:] = 0.0
