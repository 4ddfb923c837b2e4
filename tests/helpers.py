"""Shared builders for the tests: tiny configs and populations with members that differ."""

from __future__ import annotations

import numpy as np
import torch

from evorl_cli.config import ACTIVATIONS, TrainConfig, build_train_config
from evorl_cli.nets.arch import ACTIVATION_FNS
from evorl_cli.nets.policy import ActionSpec
from evorl_cli.population import Population


# A whole tiny run as a plain config dict (CartPole, 2 members x 2 envs x 32 steps: one rollout of
# 128 env steps a generation), for tests that build configs by dict merging.
TINY_RUN = {
    "seed": 0, "max_steps": 512, "device": "cpu", "progress": False, "population": {"size": 2},
    "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "gymnasium"},
    "algo": {"rollout_steps": 32, "batch_size": 32},
    "evolution": {"evo_steps": 64, "selection_episodes": 2, "confirm_episodes": 4, "eval_max_steps": 20},
    "hp_config": {"lr": {"min": 1e-4, "max": 1e-2}},
    "plot": {"on_finish": False},  # the plots have their own tests (test_records.py)
}


def tiny_config(**overrides) -> TrainConfig:
    """A config small enough to train in a second or two (CartPole, gymnasium backend)."""
    base = {
        "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "gymnasium"},
        "population": {"size": 2},
        "algo": {"rollout_steps": 32, "batch_size": 32},
        "evolution": {"evo_steps": 64, "selection_episodes": 2, "confirm_episodes": 4, "eval_max_steps": 50},
        "hp_config": {"lr": {"min": 1e-4, "max": 1e-2}, "batch_size": {"min": 8, "max": 64}},
        "max_steps": 512,
        "progress": False,
        "plot": {"on_finish": False},  # the plots have their own tests (test_records.py)
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
                      max_width: int = 96, share_encoder: bool = False, recurrent: str | None = None,
                      hidden=(32, 24, 16), rnn_layers: int = 1, width_buckets: int = 2,
                      init: str = "orthogonal") -> Population:
    """A population whose members differ in width, depth and activation (and recurrent state size)."""
    size = len(widths)
    config = tiny_config(**{"population.size": size, "net.max_width": max_width, "net.max_layers": 3,
                            "net.width_buckets": width_buckets, "net.init": init,
                            "net.share_encoder": share_encoder, "net.recurrent": recurrent,
                            "net.hidden_size": max(hidden), "net.rnn_layers": rnn_layers,
                            "algo.max_seq_len": 4})
    gen = torch.Generator().manual_seed(seed)
    pop = Population.create(config, obs_dim, action, torch.device("cpu"), gen)
    pop.arch.widths[:] = 0
    for p, (w, act) in enumerate(zip(widths, activations)):
        pop.arch.widths[p, : len(w)] = w
        pop.arch.activation[p] = ACTIVATIONS.index(act)
        if recurrent:
            pop.arch.hidden[p] = hidden[p]
    pop.refresh_masks()  # lay the parameters out for the widest/deepest member
    with torch.no_grad():
        for p in range(size):
            pop.net.init_member(pop.params[p], pop.arch, p, 0.6, gen)
            if not action.discrete:  # distinct log-stds so the Gaussian terms are exercised
                pop.net.layout.view(pop.params, "log_std")[p] = torch.linspace(-0.5, 0.3, action.n) + 0.1 * p
    return pop


class NarrowNet:
    """Member p of a population rebuilt as an ordinary narrow torch network (the oracle): plain
    matmuls for the MLP, `torch.nn.LSTMCell` / `GRUCell` for a recurrent core."""

    def __init__(self, pop: Population, p: int) -> None:
        row = pop.params.detach()[p]
        view = lambda name: pop.net.layout.view(row, name)  # noqa: E731
        sizes = pop.arch.hidden_sizes(p)
        self.hidden = int(pop.arch.hidden[p])
        self.kind = pop.net.net_cfg.recurrent
        self.act = ACTIVATION_FNS[pop.arch.activation_name(p)]
        self.discrete = pop.net.action.discrete
        self.state_layout = []  # (branch, layer, offset in the population's state) of each cell
        self.cells, self.mlps, self._shapes = {}, {}, {}
        offset = 0
        for name, branch in pop.net.branches.items():
            assert branch.cnn is None, "the oracle covers MLP and recurrent branches"
            fan_in, cells = pop.net.obs_dim, []
            if branch.rnn:
                gates, cap = branch.rnn.gates, branch.rnn.hidden
                for layer in range(branch.rnn.layers):
                    cell = (torch.nn.LSTMCell if self.kind == "lstm" else torch.nn.GRUCell)(fan_in, self.hidden)
                    h = self.hidden
                    with torch.no_grad():
                        cell.weight_ih.copy_(view(f"{name}.rnn.w_ih{layer}")[:fan_in, :, :h].reshape(fan_in, -1).T)
                        cell.weight_hh.copy_(view(f"{name}.rnn.w_hh{layer}")[:h, :, :h].reshape(h, -1).T)
                        cell.bias_ih.copy_(view(f"{name}.rnn.b_ih{layer}")[:, :h].reshape(-1))
                        cell.bias_hh.copy_(view(f"{name}.rnn.b_hh{layer}")[:, :h].reshape(-1))
                    cells.append(cell)
                    self.state_layout.append((name, layer, offset))
                    offset += cap * (2 if self.kind == "lstm" else 1)
                    self._shapes[name] = (gates, cap)
                    fan_in = h
            layers = []
            for layer, width in enumerate(sizes):
                w = view(f"{name}.w{layer}")[:fan_in, :width].clone().requires_grad_(True)
                b = view(f"{name}.b{layer}")[:width].clone().requires_grad_(True)
                layers.append((w, b))
                fan_in = width
            self.cells[name], self.mlps[name] = cells, layers
        last = sizes[-1]
        self.pi_w = view("pi.w")[:last].clone().requires_grad_(True)
        self.pi_b = view("pi.b").clone().requires_grad_(True)
        self.v_w = view("v.w")[:last].clone().requires_grad_(True)
        self.v_b = view("v.b").clone().requires_grad_(True)
        self.log_std = None if self.discrete else view("log_std").clone().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        out = [t for cells in self.cells.values() for cell in cells for t in cell.parameters()]
        out += [t for layers in self.mlps.values() for wb in layers for t in wb]
        out += [self.pi_w, self.pi_b, self.v_w, self.v_b]
        return out + ([] if self.log_std is None else [self.log_std])

    def in_layout(self) -> list[torch.Tensor]:
        """Every parameter as the population stores it (narrow blocks, recurrent weights [in, gate, unit])."""
        out = []
        for name, cells in self.cells.items():
            gates = self._shapes[name][0] if cells else 0
            for cell in cells:
                out += [cell.weight_ih.T.reshape(-1, gates, self.hidden), cell.weight_hh.T.reshape(-1, gates, self.hidden),
                        cell.bias_ih.view(gates, -1), cell.bias_hh.view(gates, -1)]
        return out + [t for t in self.parameters() if not any(t is q for c in self.cells.values()
                                                              for cell in c for q in cell.parameters())]

    @staticmethod
    def narrow_of(pop: Population, p: int) -> list[torch.Tensor]:
        """The trained population's member p in the same order as `in_layout`."""
        return NarrowNet(pop, p).in_layout()

    def _mlp(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for w, b in self.mlps[name]:
            x = self.act(x @ w + b)
        return x

    def _heads(self, outs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h_pi, h_v = (outs["shared"],) * 2 if "shared" in outs else (outs["actor"], outs["critic"])
        return h_pi @ self.pi_w + self.pi_b, (h_v @ self.v_w + self.v_b).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._heads({name: self._mlp(name, obs) for name in self.mlps})

    def forward_sequence(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor):
        """`obs` [B, L, D], the population's state row for this member [B, S], `starts` [B, L]."""
        h = self.hidden
        cell_states = {}
        for name, layer, off in self.state_layout:
            hs = state[:, off:off + h]
            cs = state[:, off + self._shapes[name][1]:off + self._shapes[name][1] + h] if self.kind == "lstm" else None
            cell_states[(name, layer)] = (hs, cs)
        outs = {name: [] for name in self.mlps}
        for t in range(obs.shape[1]):
            keep = (1 - starts[:, t]).unsqueeze(-1)
            for name in self.mlps:
                x = obs[:, t]
                for layer, cell in enumerate(self.cells[name]):
                    hs, cs = cell_states[(name, layer)]
                    if self.kind == "lstm":
                        hs, cs = cell(x, (hs * keep, cs * keep))
                    else:
                        hs = cell(x, hs * keep)
                    cell_states[(name, layer)] = (hs, cs)
                    x = hs
                outs[name].append(self._mlp(name, x))
        head, value = self._heads({name: torch.stack(v, dim=1) for name, v in outs.items()})
        return head, value
