"""A trained member loaded from a checkpoint, for evaluation, rendering and Python use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from evorl_cli import checkpoint as ckpt
from evorl_cli.config import GivenEnv, TrainConfig
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.fitness import Confirmation
from evorl_cli.population import Population
from evorl_cli.trust import CLI_ALLOW, PYTHON_ALLOW, check_checkpoint_env


@dataclass
class LoadedMember:
    population: Population  # a population of one
    config: TrainConfig
    member: int
    confirmed: Confirmation | None  # the confirmation that made it the run's best (best checkpoints only)
    fitness: float | None  # its latest selection fitness
    checkpoint: ckpt.Checkpoint

    @property
    def deterministic(self) -> bool:
        """How the run evaluated its members (selection and confirmation)."""
        return self.config.evolution.deterministic


def load_member(path: str | Path, member: int | None = None, device: str = "cpu", trust: bool = False,
                allow: str = CLI_ALLOW, given: GivenEnv | None = None) -> LoadedMember:
    """Member `member` of the run's latest population, or (None) the best member the run has seen.

    The env the caller builds from `config.env` may only run code the checkpoint names (wrappers
    other than Gymnasium's, a `module:Env` id) when `trust` is set or the command line gave it
    again (`given`); otherwise this raises, naming `allow`, the way to permit it (see trust.py).
    A checkpoint of another env than `given` names is refused."""
    checkpoint = ckpt.load(path, prefer="best" if member is None else "latest")
    config = checkpoint.config
    check_checkpoint_env(config.env, checkpoint.path, trust, allow, given)
    pop = ckpt.restore_population(checkpoint, config, torch.device(device))
    members = checkpoint.meta["members"]
    confirmed = None
    if member is None:
        if checkpoint.meta.get("kind") == "best":
            recorded = checkpoint.meta.get("confirmed")
            confirmed = None if recorded is None else Confirmation.from_dict(recorded)
            history = members[0].get("fitness_history") or []
            index, fitness = 0, (history[-1] if history else None)
        else:  # a population file: pick the member with the best latest fitness
            last = [m["fitness_history"][-1] if m.get("fitness_history") else -np.inf for m in members]
            index = int(np.argmax(last))
            fitness = None if np.isinf(last[index]) else float(last[index])
    else:
        if not 0 <= member < len(members):
            raise EvorlError(f"member={member}: the checkpoint holds members 0..{len(members) - 1}")
        index = member
        history = members[member].get("fitness_history") or []
        fitness = history[-1] if history else None
    pop.gather(np.array([index]))
    return LoadedMember(pop, config, index, confirmed, fitness, checkpoint)


class Agent:
    """One trained member. `act(obs)` takes raw env observations, one or a batch.

    >>> agent = evorl_cli.load("outputs/<run>")
    >>> action, state = agent.act(obs)
    """

    def __init__(self, loaded: LoadedMember, observation_space: gym.Space, prepare, env_actions) -> None:
        """`prepare`: raw observations -> network input; `env_actions`: the policy's actions -> the
        env's (clipped, or shifted to a Discrete space's start); both as the run's env batch does them."""
        self.loaded = loaded
        self.config = loaded.config
        self._pop = loaded.population
        self._gen = torch.Generator(device=self._pop.device)
        self._gen.manual_seed(0)
        self._prepare = prepare
        self._env_actions = env_actions
        self._single_ndim = len(observation_space.shape)

    @property
    def env_id(self) -> str:
        return self.config.env.id

    @property
    def recurrent(self) -> bool:
        return self._pop.net.recurrent

    def act(self, obs, state=None, deterministic: bool | None = None):
        """Action(s) for raw observation(s); returns (action, state). `deterministic=None` acts as the
        run evaluated its members (`evolution.deterministic`): the policy's confirmed score holds for that.

        Recurrent members: pass back the returned state with the next observation, and None at the
        start of an episode. Feed-forward members return None as state."""
        array = np.asarray(obs)
        single = array.ndim == self._single_ndim  # one observation rather than a batch
        batch = self._prepare(array)
        if state is None:
            state = self._pop.initial_state(batch.shape[0])
        if deterministic is None:
            deterministic = self.loaded.deterministic
        step = self._pop.act(torch.as_tensor(batch, device=self._pop.device).unsqueeze(0), self._gen, deterministic,
                             state)
        action = self._env_actions(step.action[0].cpu().numpy())
        return (action[0] if single else action), step.state


def load(path: str | Path, member: int | None = None, device: str = "cpu", trust: bool = False) -> Agent:
    """Load a trained member (default: the run's best) from a run directory or checkpoint file.

    `trust=True` lets the checkpoint's env config import and run the code it names (wrappers other
    than Gymnasium's, a `module:Env` id); without it such a checkpoint is refused."""
    loaded = load_member(path, member, device, trust, PYTHON_ALLOW)
    env = EnvBatch(loaded.config.env, 1)  # as the run built it: wrappers, backend, kwargs
    try:
        return Agent(loaded, env.env.single_observation_space, env.prepare, env.env_actions)
    finally:
        env.close()
