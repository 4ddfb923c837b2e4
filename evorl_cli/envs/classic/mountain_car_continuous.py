"""Batched MountainCarContinuous-v0."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from evorl_cli.envs.classic.base import _F32, _F64, _TWO
from evorl_cli.envs.classic.mountain_car import _MountainCarTrack


def _round_f32(x: np.ndarray) -> np.ndarray:
    """`x` rounded to float32 precision, kept as float64.

    An IEEE float32 `+ - * /` equals the float64 result of the same operation on the
    float32 operands rounded to float32, so float32 arithmetic can be replayed in float64
    by rounding after each step.
    """
    return x.astype(_F32).astype(_F64)


# Helpers for masks that may be collapsed to a Python bool (True/False: every sub-env/none).


def _uniform(mask: np.ndarray) -> np.ndarray | bool:
    """`mask`, or a Python bool when all its entries are equal."""
    count = np.count_nonzero(mask)
    return mask if 0 < count < mask.size else bool(count)


def _and(a: np.ndarray | bool, b: np.ndarray | bool) -> np.ndarray | bool:
    if a is False or b is False:
        return False
    return b if a is True else a if b is True else a & b


def _or(a: np.ndarray | bool, b: np.ndarray | bool) -> np.ndarray | bool:
    if a is True or b is True:
        return True
    return b if a is False else a if b is False else a | b


def _and_not(a: np.ndarray | bool, b: np.ndarray | bool) -> np.ndarray | bool:
    return _and(a, (not b) if isinstance(b, bool) else ~b)


def _select(mask: np.ndarray | bool, a: Any, b: Any) -> Any:
    """`a` where `mask`, else `b` (an array unless the selected operand is a scalar)."""
    if mask is False:
        return b
    if mask is True and isinstance(a, np.ndarray):
        return a
    return np.where(mask, a, b)


def _round_where(mask: np.ndarray | bool, x: np.ndarray) -> np.ndarray:
    """`x` rounded to float32 precision where `mask`."""
    return x if mask is False else _select(mask, _round_f32(x), x)


def _threshold(f32_mask: np.ndarray | bool, value: float) -> float | np.ndarray:
    """`value` as a comparison sees it: NumPy compares a float32 with a Python float in float32
    (NEP 50), so where `f32_mask` the threshold is `value` rounded to float32."""
    return _select(f32_mask, float(_F32(value)), value)


class ContinuousMountainCarVectorEnv(_MountainCarTrack):
    """Batched `MountainCarContinuous-v0` (Gymnasium's `Continuous_MountainCarEnv`); bit-exact.

    Gymnasium stores this env's state as float32 after every step (the state drawn at reset is
    float64), and its Python scalar arithmetic mixes NumPy float32 values with Python floats
    (e.g. a clipped force is the Python float -1.0 or 1.0, an unclipped one the action's
    float32). The step below replays those precisions: values are float64 here, rounded to
    float32 exactly where Gymnasium's operation is a float32 one, and each comparison is made
    against the threshold as Gymnasium's operand types see it. Exact for float32 and float64
    actions.

    State rows: position, velocity, and a flag that is 1.0 until the first step of an episode
    (while Gymnasium's state is still the float64 one drawn at reset).
    """

    env_id = "MountainCarContinuous-v0"
    default_max_episode_steps = 999
    state_dim = 3

    min_action = -1.0
    max_action = 1.0
    goal_position = 0.45
    power = 0.0015

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        action_space = spaces.Box(low=self.min_action, high=self.max_action, shape=(1,), dtype=_F32)
        return self._observation_box(), action_space

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([self._start(rng), 0.0, 1.0])

    def _dynamics(self, state, action):
        position, velocity, first_step = state
        a = action[:, 0]
        act_f32 = a.dtype == _F32
        a64 = a.astype(_F64) if act_f32 else a
        # Per-env masks are collapsed to Python bools when they hold for all sub-envs or none
        # (the usual case: no first step, no clipping), which skips the per-env selects.
        state_f32 = _uniform(first_step == 0.0)  # Gymnasium's position/velocity are float32 here
        # force = min(max(a, min_action), max_action): Python floats where clipped, else `a`.
        clipped = _uniform((a64 < self.min_action) | (a64 > self.max_action))
        force = a64 if clipped is False else np.clip(a64, self.min_action, self.max_action)

        # velocity += force * power - 0.0025 * math.cos(3 * position)
        # (3 * position is a float32 product when position is float32; math.cos is float64)
        hill = 0.0025 * np.cos(_round_where(state_f32, 3.0 * position))
        if act_f32 and clipped is not True:  # a float32 force: float32 product and subtraction
            dv = _round_f32(_round_f32(a64 * float(_F32(self.power))) - _round_f32(hill))
            if clipped is not False:
                dv = np.where(clipped, force * self.power - hill, dv)
        else:
            dv = force * self.power - hill  # Python-float (float64) arithmetic
        # float32 velocity + (float32 or Python float) stays float32; a float64 operand (the
        # first step's velocity, an unclipped float64 action) makes the sum float64.
        vel_f32 = _and(state_f32, _or(clipped, act_f32))
        if not (act_f32 and clipped is False):  # else dv is float32 already
            dv = _round_where(vel_f32, dv)
        velocity = _round_where(vel_f32, velocity + dv)
        # speed limit: compared in velocity's dtype, then set to the Python float +-max_speed
        limit = _threshold(vel_f32, self.max_speed)
        too_fast = _uniform(velocity > limit)
        velocity = _select(too_fast, self.max_speed, velocity)
        too_slow = _uniform(velocity < -limit)
        velocity = _select(too_slow, -self.max_speed, velocity)
        vel_limited = _or(too_fast, too_slow)
        # position += velocity: float32 unless one operand is float64
        pos_f32 = _and(state_f32, _or(vel_f32, vel_limited))
        position = _round_where(pos_f32, position + _round_where(pos_f32, velocity))
        at_right = _uniform(position > _threshold(pos_f32, self.max_position))
        position = _select(at_right, self.max_position, position)
        at_left = _uniform(position < _threshold(pos_f32, self.min_position))
        position = _select(at_left, self.min_position, position)
        # the car stops dead at the left wall (`position == min_position`, in position's dtype)
        at_wall = _or(at_left, position == _threshold(pos_f32, self.min_position))
        stopped = _uniform(_and(at_wall, velocity < 0))
        velocity = _select(stopped, 0.0, velocity)

        # terminated = position >= goal_position and velocity >= goal_velocity, each compared in
        # the dtype the value has at that point (limits and stops made it a Python number)
        pos_typed_f32 = _and_not(pos_f32, _or(at_right, at_left))
        vel_typed_f32 = _and_not(vel_f32, _or(vel_limited, stopped))
        terminated = position >= _threshold(pos_typed_f32, self.goal_position)
        terminated &= velocity >= _threshold(vel_typed_f32, self.goal_velocity)
        # reward = (100 if terminated else 0) - math.pow(action, 2) * 0.1, in float64
        reward = np.multiply(terminated, 100.0)
        np.subtract(reward, np.float_power(a64, _TWO) * 0.1, reward)

        state[0] = _round_f32(position)  # Gymnasium: self.state = np.array(..., dtype=float32)
        state[1] = _round_f32(velocity)
        state[2] = 0.0
        return state, reward, terminated

    def _observe(self, state):
        return state[0:2].T.astype(_F32)
