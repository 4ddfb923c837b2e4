"""Collect on-policy experience from the population's vector env into preallocated tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.envs.batch import EnvBatch
from evorl_cli.nets.distributions import choose, draw_noise, log_prob
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
    """Returns of episodes finished during training, summed per member (raw env rewards).

    An episode counts for the member in its slot when it ends only if that member's network played
    all of it. Envs carry on across generations, so after selection a slot's running episodes are
    finished by the member now in the slot; where that is another network (a mutated child, or a
    copy of another member), the episode is *inherited*: when it ends, its return is credited to
    no one. Its first part was earned by a network that is gone, so
    crediting the whole return would score a member on another's play; a partial return (only the
    steps the new member played) is not an episode return and would rank members by where the
    hand-over fell in their episodes, not by how well they play; any discount of the inherited part
    would be an arbitrary weight. Dropping them costs the first episode per env after a hand-over;
    a member that finished no whole episode in a generation has no training-return fitness (NaN,
    ranked last), so with `evolution.selection=train` a generation should give each env room for
    about two of its episodes."""

    def __init__(self, size: int, num_envs: int) -> None:
        self.size, self.num_envs = size, num_envs
        self.running = np.zeros(size * num_envs)
        self.whole = np.ones(size * num_envs, dtype=bool)  # the running episode is the slot member's from its start
        self.clear()

    def clear(self) -> None:
        self.return_sum = np.zeros(self.size)
        self.count = np.zeros(self.size, dtype=np.int64)

    def reset_running(self) -> None:
        self.running[:] = 0.0
        self.whole[:] = True

    def hand_over(self, keep: np.ndarray) -> None:
        """Slot p's running episodes stay its member's where `keep[p]` (the same network plays on);
        elsewhere they become inherited and will not be credited when they end."""
        self.whole &= np.repeat(np.asarray(keep, dtype=bool), self.num_envs)

    def add(self, reward: np.ndarray, done: np.ndarray) -> None:
        self.running += reward
        if done.any():
            credited = done & self.whole
            self.return_sum += (self.running * credited).reshape(self.size, self.num_envs).sum(1)
            self.count += credited.reshape(self.size, self.num_envs).sum(1)
            self.running[done] = 0.0
            self.whole[done] = True  # the next episode starts under the slot's member

    def mean_returns(self) -> np.ndarray:
        """Mean return per member of the whole episodes it finished since `clear` (nan where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.return_sum / np.maximum(self.count, 1), np.nan)


class RolloutCollector:
    """Steps the env with the population's policy; owns the current observation between rollouts.

    What the env returns (raw observations, rewards, episode ends) is written into host NumPy
    arrays and handed over as tensors once per rollout: a NumPy row write costs a fraction of a
    tensor op, and a GPU then gets one copy per rollout rather than several per step. What the
    policy produces stays in device tensors."""

    def __init__(self, env: EnvBatch, size: int, num_envs: int, steps: int, device: torch.device) -> None:
        self.env, self.size, self.num_envs, self.steps = env, size, num_envs, steps
        self.device = device
        shape = (steps, size, num_envs)
        act_shape = (*shape, *env.action.shape)
        act_dtype = torch.long if env.action.discrete else torch.float32
        flat = (steps, size * num_envs)
        self.host = {name: np.zeros(flat, dtype=np.float32) for name in ("rewards", "dones", "starts")}
        self.host["raw_obs"] = np.zeros((*flat, env.obs_dim), dtype=np.float32)
        self.buffer = Rollout(
            obs=torch.zeros(*shape, env.obs_dim, device=device),
            raw_obs=self._host_to_device("raw_obs"),
            actions=torch.zeros(act_shape, dtype=act_dtype, device=device),
            logp=torch.zeros(shape, device=device),
            values=torch.zeros(shape, device=device),
            rewards=self._host_to_device("rewards"),
            bootstrap=torch.zeros(shape, device=device),
            returns_seen=torch.zeros(shape, device=device),
            dones=self._host_to_device("dones"),
            last_value=torch.zeros(size, num_envs, device=device),
            starts=self._host_to_device("starts"),
            states=None,
        )
        self.heads = torch.zeros(*shape, env.action.n, device=device)  # what each action was drawn from
        # On CPU the env reads its actions straight from the buffer, through one NumPy view.
        self._actions_view = self.buffer.actions.numpy().reshape(flat + act_shape[3:]) if device.type == "cpu" else None
        self.episodes = EpisodeTracker(size, num_envs)
        self.obs: np.ndarray | None = None
        self.starts = np.ones(size * num_envs, dtype=bool)
        self.state: torch.Tensor | None = None

    def reset(self, seed: int | list[int]) -> None:
        """Start fresh episodes in every sub-env. Done once when a run starts: training envs then
        carry on across generations, so episodes longer than a generation are sampled whole (and
        again on resume where the backend's state could not be saved)."""
        self.obs = self.env.reset(seed)
        self.episodes.reset_running()
        self.starts = np.ones(self.size * self.num_envs, dtype=bool)
        self.state = None
        self.discounted = torch.zeros(self.size, self.num_envs, device=self.device)

    def hand_over(self, keep: np.ndarray) -> None:
        """After selection, slot p's envs carry on under the member now in slot p (whatever its
        parent), mid-episode: every backend can do that, while moving env state along with a member
        could only be done by the batched NumPy envs. Slot p's recurrent state is kept where
        `keep[p]` (the same, unmutated network plays on: the elite in its own slot) and zeroed
        elsewhere, because it was computed by another network's weights and means nothing to the
        new one; the new member then reads the rest of the episode from a fresh state. Where the
        network changes, the running episodes' returns will not be credited (`EpisodeTracker`)."""
        self.episodes.hand_over(keep)
        if self.state is not None:
            kept = torch.as_tensor(np.asarray(keep, dtype=bool), device=self.device).view(-1, 1, 1)
            self.state = torch.where(kept, self.state, torch.zeros((), device=self.device))

    def save_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """What a resumed run needs to continue the training envs exactly: the envs' own state, the
        current observation, episode starts, the partial returns of running episodes and which of
        them are inherited, and the recurrent state; only `{"env": None}` where the backend cannot save its state."""
        env = self.env.save_state()
        if env is None:  # the rest is of no use without the envs it belongs to
            return {"env": None}, {}
        tensors = {"collector.obs": torch.from_numpy(np.ascontiguousarray(self.obs)),
                   "collector.starts": torch.from_numpy(self.starts.astype(np.uint8)),
                   "collector.running": torch.from_numpy(self.episodes.running.copy()),
                   "collector.whole": torch.from_numpy(self.episodes.whole.astype(np.uint8)),
                   "collector.discounted": self.discounted.cpu()}
        if self.state is not None:
            tensors["collector.state"] = self.state.cpu()
        meta = {"env": env[0], "recurrent": self.state is not None}
        tensors.update({f"collector.env.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in env[1].items()})
        return meta, {k: v.contiguous() for k, v in tensors.items()}

    def load_state(self, meta: dict | None, tensors: dict[str, torch.Tensor]) -> bool:
        """Continue from `save_state`; False (nothing changed) where the saved run's envs could not
        be saved or the checkpoint predates continuing envs: the caller then resets them."""
        if meta is None or meta["env"] is None or not self.env.saves_state:
            return False
        prefix = "collector.env."
        self.env.load_state(meta["env"], {k[len(prefix):]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)})
        self.obs = tensors["collector.obs"].numpy().copy()
        self.starts = tensors["collector.starts"].numpy().astype(bool)
        self.episodes.running = tensors["collector.running"].numpy().copy()
        if "collector.whole" in tensors:  # older checkpoints credited every episode to its finisher
            self.episodes.whole = tensors["collector.whole"].numpy().astype(bool)
        self.discounted = tensors["collector.discounted"].to(self.device)
        self.state = tensors["collector.state"].to(self.device) if meta["recurrent"] else None
        return True

    def _to_members(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device).view(self.size, self.num_envs, *array.shape[1:])

    def _host_to_device(self, name: str) -> torch.Tensor:
        """Host array [T, P*N, ...] as a device tensor [T, P, N, ...] (no copy on CPU)."""
        array = self.host[name]
        return torch.as_tensor(array, device=self.device).view(self.steps, self.size, self.num_envs, *array.shape[2:])

    def _env_actions(self, t: int) -> np.ndarray:
        """Step `t`'s actions as the env takes them, [P*N, ...]."""
        if self._actions_view is not None:
            return self._actions_view[t]
        actions = self.buffer.actions[t]
        return actions.cpu().numpy().reshape(self.size * self.num_envs, *actions.shape[2:])

    @torch.no_grad()
    def collect(self, pop: Population, gen: torch.Generator) -> Rollout:
        buf, host = self.buffer, self.host
        gamma = pop.hp_tensor("gamma").view(-1, 1)
        if pop.net.recurrent:
            shape = (self.steps, self.size, self.num_envs, pop.net.state_size)
            if buf.states is None or buf.states.shape != shape:  # the state grows with the members
                buf.states = torch.zeros(shape, device=self.device)
            if self.state is None or self.state.shape[-1] != pop.net.state_size:
                # first rollout, or a mutation changed the state's size: every slot starts afresh
                self.state = pop.initial_state(self.num_envs)
        buf.bootstrap.zero_()
        normalize = pop.obs_norm.enabled
        # All the rollout's sampling noise in one draw; each step then picks its actions in one op,
        # and the log-probabilities of all of them are one pass after the loop.
        noise = draw_noise(self.heads.shape, pop.net.action.discrete, gen, self.device)
        log_std = pop.log_std()
        std = None if log_std is None else log_std.exp().unsqueeze(1)
        nvec = pop.net.action.nvec
        for t in range(self.steps):
            if normalize:
                host["raw_obs"][t] = self.obs
            obs = pop.obs_norm(self._to_members(self.obs), out=buf.obs[t])
            if self.state is not None:
                buf.states[t] = self.state
            head, value, state = pop.forward_normalized(obs, self.state)
            choose(head, noise[t], std, out=buf.actions[t], nvec=nvec)
            self.heads[t] = head
            buf.values[t] = value
            host["starts"][t] = self.starts
            tr = self.env.step(self._env_actions(t))
            done = tr.terminated | tr.truncated
            host["rewards"][t] = tr.reward
            host["dones"][t] = done
            cut = tr.truncated & ~tr.terminated
            if tr.final_obs is not None and cut.any():
                # A time limit is not a failure: the value of the state the episode was cut at joins
                # the reward, since the episode boundary stops bootstrapping through `dones`.
                final_value = pop.value_normalized(pop.obs_norm(self._to_members(tr.final_obs)), state)
                buf.bootstrap[t] = gamma * final_value * self._to_members(cut.astype(np.float32))
            self.starts = done
            if state is not None:  # a new episode starts from a zero state
                self.state = state * self._to_members(~done).unsqueeze(-1)
            self.episodes.add(tr.reward, done)
            self.obs = tr.obs
        buf.logp.copy_(log_prob(self.heads, log_std, buf.actions, nvec))
        buf.last_value.copy_(pop.value_normalized(pop.obs_norm(self._to_members(self.obs)), self.state))
        if self.device.type != "cpu":  # on CPU the buffers are views of the host arrays already
            buf.rewards, buf.dones, buf.starts = (self._host_to_device(n) for n in ("rewards", "dones", "starts"))
            if normalize:
                buf.raw_obs = self._host_to_device("raw_obs")
        if pop.reward_scale.enabled:
            self._returns_seen(buf, gamma)
        return buf

    def _returns_seen(self, buf: Rollout, gamma: torch.Tensor) -> None:
        """Running discounted raw returns at every step (what reward scaling learns from), carried
        over rollout boundaries and restarted with each episode."""
        discounted = self.discounted
        for t in range(self.steps):
            discounted = torch.addcmul(buf.rewards[t], discounted, gamma, out=buf.returns_seen[t])
            discounted = discounted * (1.0 - buf.dones[t])
        self.discounted = discounted
