"""Batched MountainCar-v0, and the track both MountainCar envs share."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from evorl_cli.envs.classic.base import _F32, _const, BatchedClassicControlEnv


class _MountainCarTrack(BatchedClassicControlEnv):
    """What both MountainCar envs share: the track, the goal velocity option, the observation box
    and the start state (position uniform in [-0.6, -0.4], at rest)."""

    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        goal_velocity: float = 0,
        **kwargs: Any,
    ) -> None:
        """See `BatchedClassicControlEnv`; `goal_velocity` as in Gymnasium."""
        self.goal_velocity = goal_velocity
        super().__init__(num_envs, render_mode, max_episode_steps, **kwargs)

    def _observation_box(self) -> spaces.Box:
        low = np.array([self.min_position, -self.max_speed], dtype=_F32)
        high = np.array([self.max_position, self.max_speed], dtype=_F32)
        return spaces.Box(low, high, dtype=_F32)

    def _start(self, rng: np.random.Generator) -> float:
        return rng.uniform(low=-0.6, high=-0.4)


class MountainCarVectorEnv(_MountainCarTrack):
    """Batched `MountainCar-v0` (Gymnasium's `MountainCarEnv`); bit-exact (all float64).

    State rows: position, velocity.
    """

    env_id = "MountainCar-v0"
    default_max_episode_steps = 200
    state_dim = 2

    goal_position = 0.5
    force = 0.001
    gravity = 0.0025

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        goal_velocity = self.goal_velocity
        self._c = {name: _const(value) for name, value in (
            ("force", self.force), ("three", 3), ("minus_gravity", -self.gravity), ("zero", 0),
            ("min_speed", -self.max_speed), ("max_speed", self.max_speed),
            ("min_position", self.min_position), ("max_position", self.max_position),
            ("goal_position", self.goal_position), ("goal_velocity", goal_velocity))}

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return self._observation_box(), spaces.Discrete(3)

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([self._start(rng), 0.0])

    def _dynamics(self, state, action):
        position, velocity = state
        c = self._c
        # velocity += (action - 1) * force + cos(3 * position) * (-gravity)
        push = np.subtract(action, 1)
        push = np.multiply(push, c["force"])
        hill = np.multiply(position, c["three"])
        np.cos(hill, hill)
        np.multiply(hill, c["minus_gravity"], hill)
        np.add(push, hill, push)
        np.add(velocity, push, velocity)
        np.maximum(velocity, c["min_speed"], out=velocity)
        np.minimum(velocity, c["max_speed"], out=velocity)
        np.add(position, velocity, position)
        np.maximum(position, c["min_position"], out=position)
        np.minimum(position, c["max_position"], out=position)
        # the car stops dead at the left wall
        stopped = np.equal(position, c["min_position"])
        np.logical_and(stopped, np.less(velocity, c["zero"]), out=stopped)
        if np.count_nonzero(stopped):
            velocity[stopped] = 0.0
        terminated = np.greater_equal(position, c["goal_position"])
        np.logical_and(terminated, np.greater_equal(velocity, c["goal_velocity"]), out=terminated)
        return state, np.full(self.num_envs, -1.0), terminated

    def _observe(self, state):
        return state.T.astype(_F32)
