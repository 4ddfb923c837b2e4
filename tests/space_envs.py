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
    "MultiDiscreteAct-v0": (VECTOR, spaces.MultiDiscrete([3, 3])),
    "MultiBinaryAct-v0": (VECTOR, spaces.MultiBinary(3)),
    "DictAct-v0": (VECTOR, spaces.Dict({"move": TWO, "jump": TWO})),
    "TupleAct-v0": (VECTOR, spaces.Tuple((TWO, TWO))),
    "TextAct-v0": (VECTOR, spaces.Text(4)),
    "Box2dAct-v0": (VECTOR, spaces.Box(-1.0, 1.0, (2, 3), np.float32)),
    # supported: Discrete spaces that do not start at 0
    "ShiftedDiscrete-v0": (spaces.Discrete(5, start=10), spaces.Discrete(3, start=-1)),
}

for _id, (_obs, _act) in SPACES.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=SpaceEnv, kwargs={"observation_space": _obs, "action_space": _act},
                     max_episode_steps=10)
