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
        self.params = params.requires_grad_(True)
        self.adam = adam
        self.obs_norm = obs_norm
        self.masks: ArchMasks = arch.compile(params.device)

    @classmethod
    def create(cls, config: TrainConfig, obs_dim: int, action: ActionSpec, device: torch.device,
               gen: torch.Generator) -> "Population":
        """A fresh population: every member starts from the configured architecture and hyperparameters."""
        size = config.population.size
        net = PolicyNet(obs_dim, action, config.net)
        arch = Architecture.uniform(size, config.net.hidden_sizes, config.net.max_layers, config.net.activation)
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
        return self.net.forward(self.params, obs, self.masks)

    def log_std(self) -> torch.Tensor | None:
        return None if self.net.action.discrete else self.net.log_std(self.params)

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
        with torch.no_grad():
            self.params = self.params.index_select(0, index).requires_grad_(True)
        self.adam.gather(index)
        self.obs_norm.gather(index)
        self.hp = {k: v[idx].copy() for k, v in self.hp.items()}
        self.arch = self.arch.gather(idx)
        self.refresh_masks()

    def refresh_masks(self) -> None:
        """Rebuild the forward-pass masks after an architecture change."""
        self.masks = self.arch.compile(self.device)

    def hyperparameters(self, p: int) -> dict[str, float | int]:
        return {k: (int(v[p]) if k in INTEGER_HPS else float(v[p])) for k, v in self.hp.items()}
