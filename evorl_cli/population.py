"""The population: every member's parameters, optimiser state, hyperparameters, architecture and
observation statistics, stacked on a leading member axis so that one op serves all members."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.config import INTEGER_HPS, MUTABLE_HPS, TrainConfig
from evorl_cli.nets.arch import Architecture, ArchMasks
from evorl_cli.nets.distributions import sample
from evorl_cli.nets.policy import ActionSpec, PolicyNet
from evorl_cli.normalize import ObsNormalizer
from evorl_cli.optim import BatchedAdam


@dataclass
class Step:
    """One batched action choice: env-ready actions plus what PPO stores."""

    action: torch.Tensor  # [P, B] long or [P, B, n] float (unclipped)
    logp: torch.Tensor  # [P, B]
    value: torch.Tensor  # [P, B]


class Population:
    def __init__(self, net: PolicyNet, arch: Architecture, hp: dict[str, np.ndarray],
                 params: torch.Tensor, adam: BatchedAdam, obs_norm: ObsNormalizer) -> None:
        self.net = net
        self.arch = arch
        self.hp = hp
        self.adam = adam
        self.obs_norm = obs_norm
        self._set_params(params)
        self.masks: ArchMasks = arch.compile(params.device, net.width, net.depth)

    def _set_params(self, params: torch.Tensor) -> None:
        """Install a new parameter tensor and the per-name views the forward pass reads.

        The views are made once per tensor rather than once per forward: slicing ~20 views costs
        more than a small layer's matmul."""
        self.params = params.detach().requires_grad_(True)
        with torch.enable_grad():  # the views must carry gradients back to `params`
            self.views = self.net.layout.views(self.params)

    @classmethod
    def create(cls, config: TrainConfig, obs_dim: int, action: ActionSpec, device: torch.device,
               gen: torch.Generator) -> "Population":
        """A fresh population: every member starts from the configured architecture and hyperparameters."""
        size = config.population.size
        sizes = config.net.hidden_sizes
        net = PolicyNet(obs_dim, action, max(sizes), len(sizes), config.net.share_encoder)
        arch = Architecture.uniform(size, sizes, config.net.max_layers, config.net.activation)
        params = torch.zeros(size, net.num_params)
        for p in range(size):
            net.init_member(params[p], arch, p, config.algo.action_std_init, gen)
        hp = {}
        for name in MUTABLE_HPS:
            dtype = np.int64 if name in INTEGER_HPS else np.float64
            hp[name] = np.full(size, getattr(config.algo, name), dtype=dtype)
        return cls(net, arch, hp, params.to(device), BatchedAdam(size, net.num_params, device),
                   ObsNormalizer(size, obs_dim, device, config.algo.normalize_obs))

    @property
    def size(self) -> int:
        return self.params.shape[0]

    @property
    def device(self) -> torch.device:
        return self.params.device

    def hp_tensor(self, name: str) -> torch.Tensor:
        """Hyperparameter `name` of every member as a float tensor [P] on the population's device."""
        return torch.as_tensor(self.hp[name], dtype=torch.float32, device=self.device)

    def forward_normalized(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised observations [P, B, D] -> (policy head output, value)."""
        return self.net.forward(self.views, obs, self.masks)

    def log_std(self) -> torch.Tensor | None:
        return None if self.net.action.discrete else self.views["log_std"]

    @torch.no_grad()
    def act_normalized(self, obs: torch.Tensor, gen: torch.Generator, deterministic: bool = False) -> Step:
        head, value = self.forward_normalized(obs)
        action, logp = sample(head, self.log_std(), gen, deterministic)
        return Step(action, logp, value)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator, deterministic: bool = False) -> Step:
        """Raw observations [P, B, D] -> actions, each member normalising with its own statistics."""
        return self.act_normalized(self.obs_norm(obs), gen, deterministic)

    @torch.no_grad()
    def value_normalized(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(obs)[1]

    def gather(self, idx: np.ndarray) -> None:
        """Member i becomes a copy of member idx[i]: everything a member owns moves together."""
        index = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        self._set_params(self.params.detach().index_select(0, index))
        self.adam.gather(index)
        self.obs_norm.gather(index)
        self.hp = {k: v[idx].copy() for k, v in self.hp.items()}
        self.arch = self.arch.gather(idx)
        self.refresh_masks()

    def refresh_masks(self) -> None:
        """After an architecture change: fit the layout to the widest/deepest member, rebuild masks."""
        self.set_capacity(int(self.arch.widths.max()), int(self.arch.n_layers.max()))
        self.masks = self.arch.compile(self.device, self.net.width, self.net.depth)

    def set_capacity(self, width: int, depth: int) -> None:
        """Re-lay parameters and Adam moments out for `width` x `depth`, keeping every value.

        Growing pads with zeros; shrinking drops only entries no member uses, which are zero by
        the encoders' invariant, so nothing is lost either way."""
        if (width, depth) == (self.net.width, self.net.depth):
            return
        assert width >= int(self.arch.widths.max()) and depth >= int(self.arch.n_layers.max())
        new_net = self.net.resized(width, depth)
        moved = []
        for old in (self.params.detach(), self.adam.exp_avg, self.adam.exp_avg_sq):
            new = torch.zeros(self.size, new_net.num_params, device=self.device)
            for name in new_net.layout.slots:
                if name in self.net.layout.slots:
                    src, dst = self.net.layout.view(old, name), new_net.layout.view(new, name)
                    region = (slice(None),) + tuple(slice(0, min(a, b)) for a, b in zip(src.shape[1:], dst.shape[1:]))
                    dst[region] = src[region]
            moved.append(new)
        self.net = new_net
        self._set_params(moved[0])
        self.adam.exp_avg, self.adam.exp_avg_sq = moved[1], moved[2]
        self.masks = self.arch.compile(self.device, width, depth)

    def hyperparameters(self, p: int) -> dict[str, float | int]:
        return {k: (int(v[p]) if k in INTEGER_HPS else float(v[p])) for k, v in self.hp.items()}
