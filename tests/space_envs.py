"""Small envs with each kind of observation and action space, registered on import (so that
`env.id=space_envs:<Id>` works from a command line with tests/ on the path). Each step checks that
the action lies in the env's action space and episodes last 10 steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SpaceEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), f"action {action!r} is not in {self.action_space}"
        self._t += 1
        return self.observation_space.sample(), 1.0, False, self._t >= 10, {}


VECTOR, TWO = spaces.Box(-1.0, 1.0, (3,), np.float32), spaces.Discrete(2)
SPACES = {  # id: (observation space, action space)
    "DictObs-v0": (spaces.Dict({"a": VECTOR, "b": spaces.Discrete(3)}), TWO),
    "TupleObs-v0": (spaces.Tuple((VECTOR, spaces.Discrete(3))), TWO),
    "MultiBinaryObs-v0": (spaces.MultiBinary(4), TWO),
    "MultiDiscreteObs-v0": (spaces.MultiDiscrete([3, 2]), TWO),
    "TextObs-v0": (spaces.Text(8), TWO),
    "Box4dObs-v0": (spaces.Box(0.0, 1.0, (2, 2, 2, 2), np.float32), TWO),
    "MultiDiscrete2dAct-v0": (VECTOR, spaces.MultiDiscrete([[3, 3], [2, 2]])),
    "MultiBinary2dAct-v0": (VECTOR, spaces.MultiBinary([2, 3])),
    "DictAct-v0": (VECTOR, spaces.Dict({"move": TWO, "jump": TWO})),
    "TupleAct-v0": (VECTOR, spaces.Tuple((TWO, TWO))),
    "TextAct-v0": (VECTOR, spaces.Text(4)),
    "Box2dAct-v0": (VECTOR, spaces.Box(-1.0, 1.0, (2, 3), np.float32)),
    # supported: Discrete spaces that do not start at 0, 1-D MultiDiscrete (from anywhere) and MultiBinary
    "ShiftedDiscrete-v0": (spaces.Discrete(5, start=10), spaces.Discrete(3, start=-1)),
    "MultiDiscreteAct-v0": (VECTOR, spaces.MultiDiscrete([3, 2, 4], start=[-1, 5, 0])),
    "MultiBinaryAct-v0": (VECTOR, spaces.MultiBinary(3)),
}


class MatchBitsEnv(gym.Env):
    """A task only a policy that reads each entry of its MultiDiscrete action separately solves: the
    observation is `len(nvec)` random bits, and each step pays the share of action entries equal to
    their bit (an entry with more than 2 choices must pick 0 or 1 as well). Episodes last `length`
    steps, so the best return is `length`; uniform guessing earns mean(1 / nvec) of it."""

    def __init__(self, nvec=(2, 3, 2), length: int = 8) -> None:
        self.nvec, self.length = tuple(nvec), length
        self.observation_space = spaces.Box(0.0, 1.0, (len(self.nvec),), np.float32)
        self.action_space = spaces.MultiDiscrete(list(self.nvec))
        self._bits = np.zeros(len(self.nvec), np.float32)
        self._t = 0

    def _draw(self) -> np.ndarray:
        self._bits = self.np_random.integers(0, 2, len(self.nvec)).astype(np.float32)
        return self._bits.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action)), f"action {action!r} is not in {self.action_space}"
        reward = float(np.mean(np.asarray(action) == self._bits))
        self._t += 1
        return self._draw(), reward, False, self._t >= self.length, {}

for _id, (_obs, _act) in SPACES.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=SpaceEnv, kwargs={"observation_space": _obs, "action_space": _act},
                     max_episode_steps=10)

if "MatchBits-v0" not in gym.registry:
    gym.register(id="MatchBits-v0", entry_point=MatchBitsEnv, max_episode_steps=8)
