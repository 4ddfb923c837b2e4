"""The population: every member's parameters, optimiser state, hyperparameters, architecture and
observation statistics, stacked on a leading member axis so that one op serves all members."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.config import TrainConfig
from evorl_cli.hparams import HPARAMS
from evorl_cli.nets.arch import Architecture, ArchMasks
from evorl_cli.nets.distributions import sample
from evorl_cli.nets.layout import relayout
from evorl_cli.nets.policy import ActionSpec, Capacity, PolicyNet
from evorl_cli.normalize import ObsNormalizer, RewardScaler
from evorl_cli.optim import BatchedAdam


@dataclass
class Step:
    """One batched action choice (evaluation, rendering, `evorl_cli.load`): actions plus their
    log-probabilities and values. Rollouts pick theirs in `RolloutCollector.collect`."""

    action: torch.Tensor  # [P, B] long or [P, B, n] float (unclipped)
    logp: torch.Tensor  # [P, B]
    value: torch.Tensor  # [P, B]
    state: torch.Tensor | None = None  # recurrent state after this step [P, B, S]


class Population:
    def __init__(self, net: PolicyNet, arch: Architecture, hp: dict[str, np.ndarray],
                 params: torch.Tensor, adam: BatchedAdam, obs_norm: ObsNormalizer,
                 reward_scale: RewardScaler | None = None) -> None:
        self.net = net
        self.arch = arch
        self.hp = hp
        self.adam = adam
        self.obs_norm = obs_norm
        self.reward_scale = reward_scale or RewardScaler(params.shape[0], params.device, False)
        self._set_params(params)
        self.masks: ArchMasks = self._compile_masks()
        self._row_masks: tuple[ArchMasks | None, dict] = (None, {})  # `rows`' masks per slice, for `masks`

    def _set_params(self, params: torch.Tensor) -> None:
        """Install a new flat parameter tensor and the named views the forward pass reads.

        The views share the flat tensor's storage and are themselves the autograd leaves: the
        optimiser updates the flat tensor in place and every view sees it, while a backward pass
        writes each view's gradient on its own (a view *computed* from a flat leaf would instead
        back-propagate a full-size zero tensor per parameter). The views are made once per tensor,
        not per forward: slicing ~20 views costs more than a small layer's matmul."""
        self.params = params.detach()
        self.views = {name: view.requires_grad_(True) for name, view in self.net.layout.views(self.params).items()}
        self._leaves = list(self.views.values())
        self._step_params_cache: tuple[int, ArchMasks, dict[str, torch.Tensor]] | None = None

    def _step_params(self) -> dict[str, torch.Tensor] | None:
        """`PolicyNet.step_params` for passes without autograd (rollouts, evaluation), made once per
        parameter change: every optimiser step or mutation writes `params` in place, which bumps
        its version counter (and per set of masks: width buckets change with the architecture).
        With autograd on, the forward pass reads the parameters (None)."""
        if torch.is_grad_enabled():
            return None
        version, cache = self.params._version, self._step_params_cache
        if cache is None or cache[0] != version or cache[1] is not self.masks:
            self._step_params_cache = cache = (version, self.masks, self.net.step_params(self.views, self.masks))
        return cache[2]

    def flat_grad(self, loss: torch.Tensor) -> torch.Tensor:
        """d loss / d params as one [P, N] tensor, in the layout's order."""
        grads = torch.autograd.grad(loss, self._leaves, allow_unused=True)
        return torch.cat([(torch.zeros_like(v) if g is None else g).reshape(self.size, -1)
                          for g, v in zip(grads, self._leaves)], dim=1)

    @classmethod
    def create(cls, config: TrainConfig, obs_dim: int, action: ActionSpec, device: torch.device,
               gen: torch.Generator, image: tuple[int, int, int] | None = None) -> "Population":
        """A fresh population: every member starts from the configured architecture and hyperparameters."""
        size, n = config.population.size, config.net
        hidden = n.hidden_size if n.recurrent else 0
        net = PolicyNet(obs_dim, action, n, Capacity(max(n.hidden_sizes), len(n.hidden_sizes), hidden), image)
        arch = Architecture.uniform(size, n.hidden_sizes, n.max_layers, n.activation, hidden)
        params = torch.zeros(size, net.num_params)
        for p in range(size):
            net.init_member(params[p], arch, p, config.algo.action_std_init, gen)
        hp = {name: np.full(size, getattr(config.algo, name), dtype=np.int64 if row.kind is int else np.float64)
              for name, row in HPARAMS.items()}
        return cls(net, arch, hp, params.to(device), BatchedAdam(size, net.num_params, device),
                   ObsNormalizer(size, obs_dim, device, config.algo.normalize_obs),
                   RewardScaler(size, device, config.algo.normalize_rewards))

    @property
    def size(self) -> int:
        return self.params.shape[0]

    @property
    def device(self) -> torch.device:
        return self.params.device

    def hp_tensor(self, name: str) -> torch.Tensor:
        """Hyperparameter `name` of every member as a float tensor [P] on the population's device."""
        return torch.as_tensor(self.hp[name], dtype=torch.float32, device=self.device)

    def forward_normalized(self, obs: torch.Tensor, state: torch.Tensor | None = None):
        """Normalised observations [P, B, D] (and recurrent state) -> (head output, value, new state)."""
        return self.net.forward(self.views, obs, self.masks, state, self._step_params())

    def forward_sequence(self, obs: torch.Tensor, state: torch.Tensor | None,
                         starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised sequences [P, B, L, D] replayed from `state` -> (head [P, B, L, n], value [P, B, L])."""
        return self.net.forward_sequence(self.views, obs, self.masks, state, starts)

    def initial_state(self, batch: int) -> torch.Tensor | None:
        """Zero recurrent state for `batch` envs per member (None for feed-forward nets)."""
        if not self.net.recurrent:
            return None
        return torch.zeros(self.size, batch, self.net.state_size, device=self.device)

    def log_std(self) -> torch.Tensor | None:
        return None if self.net.action.discrete else self.views["log_std"]

    @torch.no_grad()
    def act_normalized(self, obs: torch.Tensor, gen: torch.Generator, deterministic: bool = False,
                       state: torch.Tensor | None = None) -> Step:
        head, value, new_state = self.forward_normalized(obs, state)
        action, logp = sample(head, self.log_std(), gen, deterministic, self.net.action.nvec)
        return Step(action, logp, value, new_state)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator, deterministic: bool = False,
            state: torch.Tensor | None = None) -> Step:
        """Raw observations [P, B, D] -> actions, each member normalising with its own statistics."""
        return self.act_normalized(self.obs_norm(obs), gen, deterministic, state)

    @torch.no_grad()
    def value_normalized(self, obs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_normalized(obs, state)[1]

    def gather(self, idx: np.ndarray) -> None:
        """Member i becomes a copy of member idx[i]: everything a member owns moves together."""
        index = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        self._set_params(self.params.detach().index_select(0, index))
        self.adam.gather(index)
        self.obs_norm.gather(index)
        self.reward_scale.gather(index)
        self.hp = {k: v[idx].copy() for k, v in self.hp.items()}
        self.arch = self.arch.gather(idx)
        self.refresh_masks()

    def subset(self, idx: list[int] | np.ndarray) -> "Population":
        """A new population made of copies of members `idx` (e.g. one member to evaluate on its own);
        this population is left as it is."""
        sub = copy.copy(self)
        sub.adam, sub.obs_norm, sub.reward_scale = (copy.copy(x) for x in (self.adam, self.obs_norm, self.reward_scale))
        sub.gather(np.asarray(idx, dtype=np.int64))  # every gather replaces tensors, never writes into them
        return sub

    def rows(self, start: int, stop: int) -> "Population":
        """Members start..stop-1 as a population sharing this one's storage: what an optimiser step
        writes there (parameters, Adam's moments) lands in this population. For passes that need
        only part of the batch at a time (`ppo.members_per_pass`); it is not for selection."""
        part = copy.copy(self)
        part.adam = self.adam.rows(start, stop)
        part.hp = {k: v[start:stop] for k, v in self.hp.items()}
        part.arch = self.arch.gather(np.arange(start, min(stop, self.size)))
        part._set_params(self.params.detach()[start:stop])
        # Every update asks for the same slices until the architecture changes (new `masks`), so
        # each slice's masks and buckets are compiled once per change, not once per update.
        if self._row_masks[0] is not self.masks:
            self._row_masks = (self.masks, {})
        slices = self._row_masks[1]
        if (start, stop) not in slices:
            slices[start, stop] = part._compile_masks()
        part.masks = slices[start, stop]
        return part

    def needed_capacity(self) -> Capacity:
        return Capacity(int(self.arch.widths.max()), int(self.arch.n_layers.max()), int(self.arch.hidden.max()))

    def _compile_masks(self) -> ArchMasks:
        """Masks of the current architecture for the current layout, for every tower's members."""
        return self.arch.compile(self.device, self.net.cap.width, self.net.cap.depth, self.net.towers,
                                 self.net.net_cfg.width_buckets, self.net.tower.mlp.in_dim)

    def refresh_masks(self) -> None:
        """After an architecture change: fit the layout to the widest/deepest member, rebuild masks."""
        self.set_capacity(self.needed_capacity())
        self.masks = self._compile_masks()

    def set_capacity(self, cap: Capacity) -> None:
        """Re-lay parameters and Adam moments out for `cap`, keeping every value.

        Growing pads with zeros; shrinking drops only entries no member uses, which are zero by
        the encoders' invariant, so nothing is lost either way. The recurrent weights are laid out
        [in, gate, unit], so this is gate-aware."""
        if cap == self.net.cap:
            return
        need = self.needed_capacity()
        assert cap.width >= need.width and cap.depth >= need.depth and cap.hidden >= need.hidden
        new_net = self.net.resized(cap)
        params = relayout(self.params.detach(), self.net.layout, new_net.layout)
        self.adam.relayout(self.net.layout, new_net.layout)
        self.net = new_net
        self._set_params(params)
        self.masks = self._compile_masks()

    def hyperparameters(self, p: int) -> dict[str, float | int]:
        return {k: HPARAMS[k].kind(v[p]) for k, v in self.hp.items()}
