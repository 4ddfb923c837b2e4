"""Actor-critic network of the whole population.

Each branch (actor and critic, or one shared branch) is `[CNN] -> [LSTM/GRU core] -> MLP` and ends
in a linear head. `PolicyNet` holds no tensors of its own: parameters come in as views of the
population's flat `[P, N]` tensor, so the same object serves training, evaluation, selection and
checkpoint loading. Recurrent state travels as one `[P, B, state_size]` tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.config import NetConfig
from evorl_cli.nets.arch import Architecture, ArchMasks
from evorl_cli.nets.cnn import CNNEncoder
from evorl_cli.nets.layout import ParamLayout
from evorl_cli.nets.mlp import MLPEncoder, linear_init
from evorl_cli.nets.rnn import RNNCore

POLICY_HEAD_GAIN = 0.01  # near-uniform initial policy
VALUE_HEAD_GAIN = 1.0


@dataclass(frozen=True)
class ActionSpec:
    """What the policy head must produce: `n` logits (discrete) or an `n`-dim Gaussian mean.
    Multi-discrete actions (MultiDiscrete, MultiBinary) are discrete with `nvec`, the choices of
    each entry: `n` = sum(nvec) logits, one block per entry (distributions.py)."""

    discrete: bool
    n: int
    low: np.ndarray | None = None  # continuous bounds, used to clip actions sent to the env
    high: np.ndarray | None = None
    nvec: tuple[int, ...] | None = None  # multi-discrete: choices per action entry

    @property
    def shape(self) -> tuple[int, ...]:
        """One action's shape: () for a Discrete index, (len(nvec),) or (n,) otherwise."""
        if self.discrete:
            return () if self.nvec is None else (len(self.nvec),)
        return (self.n,)


@dataclass(frozen=True)
class Capacity:
    """What the parameters are laid out for: the widest/deepest MLP and largest recurrent state."""

    width: int
    depth: int
    hidden: int = 0


class Branch:
    """One encoder path: optional CNN, optional recurrent core, then the (mutable) MLP."""

    def __init__(self, prefix: str, obs_dim: int, image: tuple[int, int, int] | None, net: NetConfig,
                 cap: Capacity, layout: ParamLayout) -> None:
        self.cnn = None
        features = obs_dim
        if net.cnn is not None:
            self.cnn = CNNEncoder(f"{prefix}.cnn", image, net.cnn.channels, net.cnn.kernels, net.cnn.strides, layout)
            features = self.cnn.out_dim
        self.features = features
        self.rnn = None
        if net.recurrent:
            self.rnn = RNNCore(f"{prefix}.rnn", net.recurrent, features, cap.hidden, net.rnn_layers, layout)
            features = cap.hidden
        self.mlp = MLPEncoder(prefix, features, cap.width, cap.depth, layout, net.init)

    @property
    def state_size(self) -> int:
        return self.rnn.state_size if self.rnn else 0

    def _encode(self, p, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.forward(p, x) if self.cnn else x

    def step(self, p, x: torch.Tensor, state: torch.Tensor | None, masks: ArchMasks,
             head: tuple[torch.Tensor, torch.Tensor]):
        """`x` [P, B, D] -> (the linear `head` on the MLP's output [P, B, n], new state)."""
        x = self._encode(p, x)
        if self.rnn:
            x, state = self.rnn.step(p, x, state)
        return self.mlp.forward(p, x, masks, head), state

    def sequence(self, p, x: torch.Tensor, state: torch.Tensor | None, starts: torch.Tensor | None,
                 masks: ArchMasks, head: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """`x` [P, B, L, D] from `state` [P, B, S], zeroing the state where `starts` [P, B, L] is 1
        (an episode begins there) -> the linear `head` on the MLP's output [P, B, L, n]. Only the
        recurrent core loops over time; the CNN and MLP see all B*L steps at once."""
        size, batch, length = x.shape[:3]
        x = self._encode(p, x.reshape(size, batch * length, -1)).view(size, batch, length, -1)
        if self.rnn:
            x, _ = self.rnn.sequence(p, x, state, starts)
        return self.mlp.forward(p, x.reshape(size, batch * length, -1), masks, head).view(size, batch, length, -1)


class PolicyNet:
    """Branches plus linear policy and value heads, laid out for one `Capacity`."""

    def __init__(self, obs_dim: int, action: ActionSpec, net: NetConfig, cap: Capacity,
                 image: tuple[int, int, int] | None = None) -> None:
        self.obs_dim, self.action, self.net_cfg, self.cap, self.image = obs_dim, action, net, cap, image
        self.layout = ParamLayout()
        names = ("shared",) if net.share_encoder else ("actor", "critic")
        self.branches = {name: Branch(name, obs_dim, image, net, cap, self.layout) for name in names}
        self.layout.add("pi.w", (cap.width, action.n))
        self.layout.add("pi.b", (action.n,))
        self.layout.add("v.w", (cap.width, 1))
        self.layout.add("v.b", (1,))
        if not action.discrete:
            self.layout.add("log_std", (action.n,))
        # Separate actor and critic towers have the same structure, so they run as one batch of
        # 2P members (actor rows first): one op per layer and time step instead of two, which on
        # small nets is most of the cost. Their parameters are stacked under the actor's names.
        self.towers = len(self.branches)
        self._tower_names = [n.split(".", 1)[1] for n in self.layout.slots if n.startswith("actor.")]
        self.tower = next(iter(self.branches.values()))  # the Branch that reads the stacked towers
        self.state_size = self.tower.state_size * self.towers

    @property
    def num_params(self) -> int:
        return self.layout.size

    @property
    def recurrent(self) -> bool:
        return self.state_size > 0

    def resized(self, cap: Capacity) -> "PolicyNet":
        return PolicyNet(self.obs_dim, self.action, self.net_cfg, cap, self.image)

    def tower_params(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parameters the tower pass reads: the shared branch's own, or actor and critic
        stacked on the member axis ([2P, ...]) under the actor's names."""
        if self.towers == 1:
            return p
        return {f"actor.{n}": torch.cat([p[f"actor.{n}"], p[f"critic.{n}"]]) for n in self._tower_names}

    def step_params(self, p: dict[str, torch.Tensor], masks: ArchMasks) -> dict[str, torch.Tensor]:
        """What a pass without autograd (rollouts, evaluation) reads, prepared from the parameters
        once per change of them or of the architecture (the population caches it): the stacked
        towers, the recurrent cell's `step_weights`, both heads merged into one matmul (`heads.w`,
        `heads.b`), and the MLP's width-bucket blocks (heads included)."""
        prepared = dict(self.tower_params(p))
        if self.tower.rnn:
            prepared.update(self.tower.rnn.step_weights(prepared))
        prepared["heads.w"], prepared["heads.b"] = self.merged_heads(p)
        prepared.update(self.tower.mlp.prepare(prepared, masks, self._head(prepared)))
        return prepared

    def merged_heads(self, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy and value heads as one weight and bias, so both are one matmul over the tower
        features. Shared branch: [P, W, n + 1], the value as the last output column. Separate
        towers: [2P, W, n], the policy on the actor's rows and the value in column 0 of the
        critic's (one matmul over all feature rows, so the backward pass needs no slicing)."""
        size, n = p["pi.w"].shape[0], self.action.n
        if self.towers == 1:
            return (torch.cat([p["pi.w"], p["v.w"]], dim=-1),
                    torch.cat([p["pi.b"], p["v.b"]], dim=-1).unsqueeze(1))
        pad = p["v.w"].new_zeros(size, p["v.w"].shape[1], n - 1)
        return (torch.cat([p["pi.w"], torch.cat([p["v.w"], pad], dim=-1)]),
                torch.cat([p["pi.b"], torch.cat([p["v.b"], pad[:, 0]], dim=-1)]).unsqueeze(1))

    def _stack(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """Per-member input [P, ...] -> the same for every tower [T*P, ...]."""
        return x if x is None or self.towers == 1 else torch.cat([x, x])

    def _stack_state(self, state: torch.Tensor | None) -> torch.Tensor | None:
        """[P, B, T*S] (actor's state, then critic's) -> [T*P, B, S]."""
        if state is None or self.towers == 1:
            return state
        return torch.cat(state.chunk(self.towers, dim=-1))

    def _unstack_state(self, state: torch.Tensor | None) -> torch.Tensor | None:
        if state is None or self.towers == 1:
            return state
        return torch.cat(state.chunk(self.towers, dim=0), dim=-1)

    def _head(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy and value heads as the one linear layer the towers end in (`merged_heads`,
        read from `p` when `step_params` made them)."""
        return (p["heads.w"], p["heads.b"]) if "heads.w" in p else self.merged_heads(p)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The merged heads' output [T*P, B, n(+1)] -> policy head [P, B, n] (actor's or shared
        rows) and value [P, B] (critic's rows, or the shared rows' last column)."""
        n = self.action.n
        if self.towers == 1:
            return out[..., :n], out[..., n]
        size = out.shape[0] // 2
        return out[:size], out[size:, :, 0]

    def forward(self, p: dict[str, torch.Tensor], obs: torch.Tensor, masks: ArchMasks,
                state: torch.Tensor | None = None, prepared: dict[str, torch.Tensor] | None = None):
        """One step. `p`: parameter views; `obs` [P, B, obs_dim]; `state` [P, B, state_size] or None;
        `prepared`: `step_params(p, masks)` for a pass without autograd -> (logits or action mean [P, B, n],
        value [P, B], new state or None). `masks` are built for every tower's members
        (`Architecture.compile`)."""
        towers, heads = (self.tower_params(p), p) if prepared is None else (prepared, prepared)
        out, state = self.tower.step(towers, self._stack(obs), self._stack_state(state), masks, self._head(heads))
        head, value = self._split(out)
        return head, value, self._unstack_state(state)

    def forward_sequence(self, p, obs: torch.Tensor, masks: ArchMasks, state: torch.Tensor | None = None,
                         starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences: `obs` [P, B, L, obs_dim] -> (head [P, B, L, n], value [P, B, L])."""
        size, batch, length = obs.shape[:3]
        out = self.tower.sequence(self.tower_params(p), self._stack(obs), self._stack_state(state),
                                  self._stack(starts), masks, self._head(p))
        head, value = self._split(out.view(self.towers * size, batch * length, -1))
        return head.view(size, batch, length, -1), value.view(size, batch, length)

    def actor_slices(self) -> list[tuple[int, int]]:
        """Flat ranges of the parameters that shape the policy (for parameter-noise mutation)."""
        prefixes = ("shared.", "actor.", "pi.", "log_std")
        return [(s.start, s.end) for name, s in self.layout.slots.items() if name.startswith(prefixes)]

    # --- initialisation of one member (architecture surgery: evolve/architecture.py) -------------

    def init_member(self, row: torch.Tensor, arch: Architecture, p: int, action_std_init: float,
                    gen: torch.Generator) -> None:
        """Fresh init of member `p`'s active blocks; the rest zero. MLP layers and heads follow
        `net.init` (orthogonal: hidden gain sqrt 2, policy 0.01, value 1); CNN and recurrent
        cores are orthogonal."""
        row.zero_()
        sizes = arch.hidden_sizes(p)
        for branch in self.branches.values():
            fan_in = branch.features
            if branch.cnn:
                branch.cnn.init_member(row, gen)
            if branch.rnn:
                branch.rnn.init_member(row, branch.features, int(arch.hidden[p]), gen)
                fan_in = int(arch.hidden[p])
            for layer, width in enumerate(sizes):
                branch.mlp.init_layer(row, layer, fan_in, width, gen)
                fan_in = width
        last = sizes[-1]
        for head, cols, gain in (("pi", self.action.n, POLICY_HEAD_GAIN), ("v", 1, VALUE_HEAD_GAIN)):
            weight, bias = linear_init(self.net_cfg.init, last, cols, gain, gen)
            self.layout.view(row, f"{head}.w")[:last] = weight
            self.layout.view(row, f"{head}.b")[:] = bias
        if not self.action.discrete:
            self.layout.view(row, "log_std")[:] = math.log(action_std_init)
