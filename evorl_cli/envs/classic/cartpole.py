"""Batched CartPole-v1."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from evorl_cli.envs.classic.base import _F32, _const, BatchedClassicControlEnv


class CartPoleVectorEnv(BatchedClassicControlEnv):
    """Batched `CartPole-v1` (Gymnasium's `CartPoleEnv`, Euler integration); bit-exact.

    Unlike Gymnasium's own `CartPoleVectorEnv` (next-step autoreset, one shared generator), this
    one resets in the same step and seeds each sub-env like `gym.make("CartPole-v1")`.
    State rows: x, x_dot, theta, theta_dot.
    """

    env_id = "CartPole-v1"
    default_max_episode_steps = 500
    state_dim = 4

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        sutton_barto_reward: bool = False,
        **kwargs: Any,
    ) -> None:
        """See `BatchedClassicControlEnv`; `sutton_barto_reward` as in Gymnasium (0 per step, -1 on failure)."""
        self.sutton_barto_reward = bool(sutton_barto_reward)
        super().__init__(num_envs, render_mode, max_episode_steps, **kwargs)
        n = self.num_envs
        # Time derivatives [x_dot, xacc, theta_dot, thetaacc], laid out like the state so one
        # multiply-add does the four Euler updates.
        self._deriv = np.empty((4, n))
        self._work = np.empty((6, n))
        # Per-row |x| and |theta| limits for the failure test.
        self._limits = np.repeat([[self.x_threshold], [self.theta_threshold_radians]], n, axis=1)
        self._c = {name: _const(getattr(self, name)) for name in (
            "gravity", "total_mass", "length", "polemass_length", "masspole", "force_mag", "tau")}
        self._c["force_span"] = _const(2 * self.force_mag)
        self._c["four_thirds"] = _const(4.0 / 3.0)

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array([self.x_threshold * 2, np.inf, self.theta_threshold_radians * 2, np.inf], dtype=_F32)
        return spaces.Box(-high, high, dtype=_F32), spaces.Discrete(2)

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low=-0.05, high=0.05, size=(4,))

    def _dynamics(self, state, action):
        add, sub, mul, div = np.add, np.subtract, np.multiply, np.divide
        c = self._c
        x_dot, theta, theta_dot = state[1], state[2], state[3]
        deriv = self._deriv
        xacc, thetaacc = deriv[1], deriv[3]
        force, cos, sin, temp, den, tmp = self._work
        # force = +force_mag for action 1, -force_mag for action 0
        mul(action, c["force_span"], force)
        sub(force, c["force_mag"], force)
        np.cos(theta, cos)
        np.sin(theta, sin)
        # temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        np.square(theta_dot, temp)
        mul(temp, c["polemass_length"], temp)
        mul(temp, sin, temp)
        add(force, temp, temp)
        div(temp, c["total_mass"], temp)
        # thetaacc = (gravity * sin - cos * temp) / (length * (4/3 - masspole * cos**2 / total_mass))
        np.square(cos, den)
        mul(den, c["masspole"], den)
        div(den, c["total_mass"], den)
        sub(c["four_thirds"], den, den)
        mul(den, c["length"], den)
        mul(sin, c["gravity"], thetaacc)
        mul(cos, temp, tmp)
        sub(thetaacc, tmp, thetaacc)
        div(thetaacc, den, thetaacc)
        # xacc = temp - polemass_length * thetaacc * cos / total_mass
        mul(thetaacc, c["polemass_length"], xacc)
        mul(xacc, cos, xacc)
        div(xacc, c["total_mass"], xacc)
        sub(temp, xacc, xacc)
        # Euler: every state variable moves by tau * its derivative taken at the old state.
        np.copyto(deriv[0], x_dot)
        np.copyto(deriv[2], theta_dot)
        mul(deriv, c["tau"], deriv)
        add(state, deriv, state)

        # |x| > x_threshold or |theta| > theta_threshold (abs is exact, so this is Gymnasium's test)
        out = np.absolute(state[0::2])
        np.greater(out, self._limits, out=out)
        terminated = np.logical_or(out[0], out[1])
        if self.sutton_barto_reward:
            reward = np.where(terminated, -1.0, 0.0)
        else:
            reward = np.ones(self.num_envs)
        return state, reward, terminated

    def _observe(self, state):
        return state.T.astype(_F32)
