"""Batched Pendulum-v1."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from evorl_cli.envs.classic.base import (
    _F32,
    _F64,
    _const,
    _TWO,
    _C_0_1,
    _PI,
    _TWO_PI,
    BatchedClassicControlEnv,
)


class PendulumVectorEnv(BatchedClassicControlEnv):
    """Batched `Pendulum-v1` (Gymnasium's `PendulumEnv`).

    Observations, terminations and truncations are bit-exact, and so are rewards for float64
    actions. For float32 actions Gymnasium squares the torque with NumPy's float32 scalar power
    (libm `powf`), which in about 0.1% of cases is one float32 ulp off the correctly rounded
    square used here (NumPy has no array ufunc that calls `powf`), so such a reward can differ
    by at most 0.001 * ulp(4.0) ~ 5e-10. The reward does not feed back into the dynamics.

    State rows: theta, theta_dot.
    """

    env_id = "Pendulum-v1"
    default_max_episode_steps = 200
    state_dim = 2

    max_speed = 8
    max_torque = 2.0
    dt = 0.05
    m = 1.0
    l = 1.0  # noqa: E741 - Gymnasium's name

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        g: float = 10.0,
        **kwargs: Any,
    ) -> None:
        """See `BatchedClassicControlEnv`; `g` is gravity, as in Gymnasium."""
        self.g = g
        super().__init__(num_envs, render_mode, max_episode_steps, **kwargs)
        self._reset_high = np.array([np.pi, 1.0])  # Gymnasium's DEFAULT_X, DEFAULT_Y
        self._c_gravity = _const(3 * self.g / (2 * self.l))
        self._c_dt = _const(self.dt)
        self._c_min_speed = _const(-self.max_speed)
        self._c_max_speed = _const(self.max_speed)

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array([1.0, 1.0, self.max_speed], dtype=_F32)
        action_space = spaces.Box(low=-self.max_torque, high=self.max_torque, shape=(1,), dtype=_F32)
        return spaces.Box(low=-high, high=high, dtype=_F32), action_space

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low=-self._reset_high, high=self._reset_high)

    def _dynamics(self, state, action):
        th, thdot = state
        add, mul = np.add, np.multiply
        # The torque terms use Python-float constants, which take the action's dtype (NEP 50) as
        # on Gymnasium's NumPy scalars; the float64-only terms use 0-d float64 constants.
        u = np.clip(action[:, 0], -self.max_torque, self.max_torque)
        # costs = angle_normalize(th)**2 + 0.1*thdot**2 + 0.001*u**2 (float64 ** is libm pow)
        costs = add(th, _PI)
        np.remainder(costs, _TWO_PI, costs)
        np.subtract(costs, _PI, costs)
        np.float_power(costs, _TWO, costs)
        tmp = np.float_power(thdot, _TWO)
        mul(tmp, _C_0_1, tmp)
        add(costs, tmp, costs)
        u_sq = np.float_power(u, _TWO) if u.dtype == _F64 else np.square(u)
        add(costs, mul(u_sq, 0.001), costs)
        # newthdot = thdot + (3g/(2l) * sin(th) + 3/(m l^2) * u) * dt, clipped to max_speed
        np.sin(th, tmp)
        mul(tmp, self._c_gravity, tmp)
        add(tmp, mul(u, 3.0 / (self.m * self.l**2)), tmp)
        mul(tmp, self._c_dt, tmp)
        add(thdot, tmp, thdot)
        np.maximum(thdot, self._c_min_speed, out=thdot)
        np.minimum(thdot, self._c_max_speed, out=thdot)
        # newth = th + newthdot * dt
        mul(thdot, self._c_dt, tmp)
        add(th, tmp, th)
        np.negative(costs, costs)
        return state, costs, np.zeros(self.num_envs, dtype=bool)

    def _observe(self, state):
        th, thdot = state
        obs = np.empty((state.shape[1], 3), dtype=_F32)
        obs[:, 0] = np.cos(th)
        obs[:, 1] = np.sin(th)
        obs[:, 2] = thdot
        return obs
