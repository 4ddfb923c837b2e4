"""Shared builders for the tests: tiny configs and populations with members that differ."""

from __future__ import annotations

import numpy as np
import torch

from evorl_cli.config import ACTIVATIONS, TrainConfig, build_train_config
from evorl_cli.nets.arch import ACTIVATION_FNS
from evorl_cli.nets.policy import ActionSpec
from evorl_cli.population import Population


def tiny_config(**overrides) -> TrainConfig:
    """A config small enough to train in a second or two (CartPole, gymnasium backend)."""
    base = {
        "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "gymnasium"},
        "population": {"size": 2},
        "algo": {"rollout_steps": 32, "batch_size": 32},
        "evolution": {"evo_steps": 64, "eval_episodes": 2, "eval_max_steps": 50},
        "hp_config": {"lr": {"min": 1e-4, "max": 1e-2}, "batch_size": {"min": 8, "max": 64}},
        "max_steps": 512,
        "progress": False,
    }
    for key, value in overrides.items():
        node = base
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return build_train_config(base)


DISCRETE = ActionSpec(discrete=True, n=3)
CONTINUOUS = ActionSpec(discrete=False, n=2, low=-np.ones(2, np.float32), high=np.ones(2, np.float32))


def varied_population(action: ActionSpec, obs_dim: int = 5, seed: int = 0,
                      widths=([64, 64], [32, 48], [16]), activations=("tanh", "relu", "elu"),
                      max_width: int = 96, share_encoder: bool = False) -> Population:
    """A population whose members differ in width, depth and activation."""
    size = len(widths)
    config = tiny_config(**{"population.size": size, "net.max_width": max_width, "net.max_layers": 3,
                            "net.share_encoder": share_encoder})
    gen = torch.Generator().manual_seed(seed)
    pop = Population.create(config, obs_dim, action, torch.device("cpu"), gen)
    pop.arch.widths[:] = 0
    for p, (w, act) in enumerate(zip(widths, activations)):
        pop.arch.widths[p, : len(w)] = w
        pop.arch.activation[p] = ACTIVATIONS.index(act)
    pop.refresh_masks()  # lay the parameters out for the widest/deepest member
    with torch.no_grad():
        for p in range(size):
            pop.net.init_member(pop.params[p], pop.arch, p, 0.6, gen)
            if not action.discrete:  # distinct log-stds so the Gaussian terms are exercised
                pop.net.layout.view(pop.params, "log_std")[p] = torch.linspace(-0.5, 0.3, action.n) + 0.1 * p
    return pop


class NarrowNet:
    """Member p of a population rebuilt as an ordinary narrow torch network (the oracle)."""

    def __init__(self, pop: Population, p: int) -> None:
        views = pop.net.layout.views(pop.params.detach()[p])
        sizes = pop.arch.hidden_sizes(p)
        self.act = ACTIVATION_FNS[pop.arch.activation_name(p)]
        self.discrete = pop.net.action.discrete
        self.encoders = {}
        for enc in pop.net.branches:
            layers, fan_in = [], pop.net.obs_dim
            for layer, width in enumerate(sizes):
                w = views[f"{enc}.w{layer}"][:fan_in, :width].clone().requires_grad_(True)
                b = views[f"{enc}.b{layer}"][:width].clone().requires_grad_(True)
                layers.append((w, b))
                fan_in = width
            self.encoders[enc] = layers
        last = sizes[-1]
        self.pi_w = views["pi.w"][:last].clone().requires_grad_(True)
        self.pi_b = views["pi.b"].clone().requires_grad_(True)
        self.v_w = views["v.w"][:last].clone().requires_grad_(True)
        self.v_b = views["v.b"].clone().requires_grad_(True)
        self.log_std = None if self.discrete else views["log_std"].clone().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        out = [t for layers in self.encoders.values() for wb in layers for t in wb]
        out += [self.pi_w, self.pi_b, self.v_w, self.v_b]
        return out + ([] if self.log_std is None else [self.log_std])

    def _encode(self, enc: str, x: torch.Tensor) -> torch.Tensor:
        for w, b in self.encoders[enc]:
            x = self.act(x @ w + b)
        return x

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_pi = self._encode("shared" if "shared" in self.encoders else "actor", obs)
        h_v = self._encode("shared" if "shared" in self.encoders else "critic", obs)
        return h_pi @ self.pi_w + self.pi_b, (h_v @ self.v_w + self.v_b).squeeze(-1)
