"""Fitness: every member plays `episodes` evaluation episodes at once in one vector env."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.envs.batch import EnvBatch
from evorl_cli.population import Population


@dataclass
class EvalResult:
    returns: np.ndarray  # [P, E] return of each episode
    lengths: np.ndarray  # [P, E]

    @property
    def fitness(self) -> np.ndarray:
        return self.returns.mean(axis=1)

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())


@torch.no_grad()
def evaluate(pop: Population, env: EnvBatch, episodes: int, seed: int, gen: torch.Generator,
             deterministic: bool = True, max_steps: int | None = None) -> EvalResult:
    """Run one episode in each of the P x E sub-envs of `env` and return every return.

    Each member meets the same E starting states (episode j is seeded `seed + j` for every member),
    so fitness differences come from the policies, not from luck of the draw.
    """
    size = pop.size
    seeds = [seed + j for _ in range(size) for j in range(episodes)]
    obs = env.reset(seeds)
    finished = np.zeros(size * episodes, dtype=bool)
    returns = np.zeros(size * episodes)
    lengths = np.zeros(size * episodes, dtype=np.int64)
    steps = 0
    state = pop.initial_state(episodes)  # carried through each episode (each env plays one)
    while not finished.all() and (max_steps is None or steps < max_steps):
        member_obs = torch.as_tensor(obs, device=pop.device).view(size, episodes, -1)
        step = pop.act(member_obs, gen, deterministic, state)
        action, state = step.action, step.state
        tr = env.step(action.cpu().numpy().reshape(size * episodes, *action.shape[2:]))
        running = ~finished
        returns += tr.reward * running
        lengths += running
        finished |= tr.terminated | tr.truncated
        obs = tr.obs
        steps += 1
    return EvalResult(returns.reshape(size, episodes), lengths.reshape(size, episodes))
