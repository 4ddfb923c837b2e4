"""Collect on-policy experience from the population's vector env into preallocated tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.envs.batch import EnvBatch
from evorl_cli.population import Population


@dataclass
class Rollout:
    """T steps of P members x N envs. `obs` is normalised as the policy saw it."""

    obs: torch.Tensor  # [T, P, N, D]
    raw_obs: torch.Tensor  # [T, P, N, D] what the normaliser learns from (written only when it is on)
    actions: torch.Tensor  # [T, P, N] or [T, P, N, n]
    logp: torch.Tensor  # [T, P, N]
    values: torch.Tensor  # [T, P, N]
    rewards: torch.Tensor  # [T, P, N] raw env rewards
    bootstrap: torch.Tensor  # [T, P, N] gamma * V(final obs) where a time limit cut the episode, else 0
    dones: torch.Tensor  # [T, P, N] float: 1 where the episode ended at this step
    last_value: torch.Tensor  # [P, N] value of the observation after the last step
    starts: torch.Tensor  # [T, P, N] float: 1 where obs[t] is the first of an episode
    states: torch.Tensor | None  # [T, P, N, S] recurrent state fed with obs[t] (None: feed-forward)
    returns_seen: torch.Tensor | None = None  # [T, P, N] running discounted raw returns (reward scaling)


def members_first(x: torch.Tensor) -> torch.Tensor:
    """Rollout tensor [T, P, N, ...] -> [P, T*N, ...]: each member's samples in one row."""
    t, p, n = x.shape[:3]
    return x.transpose(0, 1).reshape(p, t * n, *x.shape[3:])


class EpisodeTracker:
    """Returns of episodes finished during training, summed per member (raw env rewards)."""

    def __init__(self, size: int, num_envs: int) -> None:
        self.size, self.num_envs = size, num_envs
        self.running = np.zeros(size * num_envs)
        self.clear()

    def clear(self) -> None:
        self.return_sum = np.zeros(self.size)
        self.count = np.zeros(self.size, dtype=np.int64)

    def reset_running(self) -> None:
        self.running[:] = 0.0

    def add(self, reward: np.ndarray, done: np.ndarray) -> None:
        self.running += reward
        if done.any():
            per_member = (self.running * done).reshape(self.size, self.num_envs)
            self.return_sum += per_member.sum(1)
            self.count += done.reshape(self.size, self.num_envs).sum(1)
            self.running[done] = 0.0

    def mean_returns(self) -> np.ndarray:
        """Mean return per member of episodes finished since `clear` (nan where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.return_sum / np.maximum(self.count, 1), np.nan)


class RolloutCollector:
    """Steps the env with the population's policy; owns the current observation between rollouts."""

    def __init__(self, env: EnvBatch, size: int, num_envs: int, steps: int, device: torch.device) -> None:
        self.env, self.size, self.num_envs, self.steps = env, size, num_envs, steps
        self.device = device
        shape = (steps, size, num_envs)
        act_shape = shape if env.action.discrete else (*shape, env.action.n)
        act_dtype = torch.long if env.action.discrete else torch.float32
        self.buffer = Rollout(
            obs=torch.zeros(*shape, env.obs_dim, device=device),
            raw_obs=torch.zeros(*shape, env.obs_dim, device=device),
            actions=torch.zeros(act_shape, dtype=act_dtype, device=device),
            logp=torch.zeros(shape, device=device),
            values=torch.zeros(shape, device=device),
            rewards=torch.zeros(shape, device=device),
            bootstrap=torch.zeros(shape, device=device),
            returns_seen=torch.zeros(shape, device=device),
            dones=torch.zeros(shape, device=device),
            last_value=torch.zeros(size, num_envs, device=device),
            starts=torch.zeros(shape, device=device),
            states=None,
        )
        self.episodes = EpisodeTracker(size, num_envs)
        self.obs: np.ndarray | None = None
        self.starts = torch.ones(size, num_envs, device=device)
        self.state: torch.Tensor | None = None

    def reset(self, seed: int) -> None:
        """Start fresh episodes in every sub-env (done at each generation start, so a generation
        boundary holds no half-finished episode and a resumed run continues exactly)."""
        self.obs = self.env.reset(seed)
        self.episodes.reset_running()
        self.starts = torch.ones(self.size, self.num_envs, device=self.device)
        self.state = None
        self.discounted = torch.zeros(self.size, self.num_envs, device=self.device)

    def _to_members(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device).view(self.size, self.num_envs, *array.shape[1:])

    @torch.no_grad()
    def collect(self, pop: Population, gen: torch.Generator) -> Rollout:
        buf = self.buffer
        gamma = pop.hp_tensor("gamma").view(-1, 1)
        if pop.net.recurrent:
            shape = (self.steps, self.size, self.num_envs, pop.net.state_size)
            if buf.states is None or buf.states.shape != shape:  # the state grows with the members
                buf.states = torch.zeros(shape, device=self.device)
            if self.state is None or self.state.shape[-1] != pop.net.state_size:
                self.state = pop.initial_state(self.num_envs)
        for t in range(self.steps):
            raw = self._to_members(self.obs)
            obs = pop.obs_norm(raw)
            if self.state is not None:
                buf.states[t] = self.state
            step = pop.act_normalized(obs, gen, state=self.state)
            buf.starts[t] = self.starts
            if pop.obs_norm.enabled:  # otherwise obs is raw already
                buf.raw_obs[t] = raw
            buf.obs[t] = obs
            buf.actions[t] = step.action
            buf.logp[t] = step.logp
            buf.values[t] = step.value
            actions = step.action.cpu().numpy().reshape(self.size * self.num_envs, *step.action.shape[2:])
            tr = self.env.step(actions)
            done = tr.terminated | tr.truncated
            reward = self._to_members(tr.reward)
            buf.rewards[t] = reward
            cut = tr.truncated & ~tr.terminated
            if tr.final_obs is not None and cut.any():
                # A time limit is not a failure: the value of the state the episode was cut at joins
                # the reward, since the episode boundary stops bootstrapping through `dones`.
                final_value = pop.value_normalized(pop.obs_norm(self._to_members(tr.final_obs)), step.state)
                buf.bootstrap[t] = gamma * final_value * self._to_members(cut.astype(np.float32))
            else:
                buf.bootstrap[t] = 0.0
            ended = self._to_members(done.astype(np.float32))
            if pop.reward_scale.enabled:
                self.discounted = self.discounted * gamma + reward
                buf.returns_seen[t] = self.discounted
                self.discounted = self.discounted * (1.0 - ended)
            buf.dones[t] = ended
            self.starts = ended
            if step.state is not None:  # a new episode starts from a zero state
                self.state = step.state * (1.0 - ended).unsqueeze(-1)
            self.episodes.add(tr.reward, done)
            self.obs = tr.obs
        buf.last_value.copy_(pop.value_normalized(pop.obs_norm(self._to_members(self.obs)), self.state))
        return buf
