"""Batched Acrobot-v1."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from evorl_cli.envs.classic.base import (
    _F32,
    _F64,
    _const,
    _ONE,
    _TWO,
    _MINUS_ONE,
    _PI,
    _MINUS_PI,
    _TWO_PI,
    _HALF_PI,
    BatchedClassicControlEnv,
)


class AcrobotVectorEnv(BatchedClassicControlEnv):
    """Batched `Acrobot-v1` (Gymnasium's `AcrobotEnv`, "book" dynamics, RK4 with dt=0.2); bit-exact.

    Every floating-point operation of Gymnasium's `_dsdt`/`rk4` is repeated on float64 arrays in
    the same order (up to exact sign rewrites), so results are bit-identical:

    * Gymnasium calls NumPy's `cos`/`sin` on float64 scalars; the same ufuncs on arrays give the
      same bits (the tests check this on the machine they run on);
    * `x**2` on a NumPy float64 scalar calls libm `pow`, which is not always the correctly
      rounded `x*x` (about 1 in 1200 inputs differ by an ulp); `np.float_power` calls the same
      `pow`, while `x**2`/`np.square` on arrays would multiply;
    * the reset state is float32 in Gymnasium, so the first observation of an episode takes
      cos/sin in float32 (`_observe_initial`).

    This matters: the system is chaotic, and a one-ulp difference grows to O(1) within an
    episode. State rows: theta1, theta2, dtheta1, dtheta2.
    """

    env_id = "Acrobot-v1"
    default_max_episode_steps = 500
    state_dim = 4

    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_LENGTH_2 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * math.pi
    MAX_VEL_2 = 9 * math.pi
    GRAVITY = 9.8

    # Constant factors of `_dsdt`, each evaluated like the leading (left-associated) constant
    # part of Gymnasium's expression, so multiplying by them rounds identically.
    _m1, _m2, _l1 = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1
    _lc1, _lc2, _I1, _I2, _g = LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI, GRAVITY
    D1_CONST = _m1 * _lc1**2                 # d1 = D1_CONST + m2*(D1_INNER + D1_COS*cos2) + I1 + I2
    D1_INNER = _l1**2 + _lc2**2
    D1_COS = 2 * _l1 * _lc2
    D2_INNER = _lc2**2                        # d2 = m2*(D2_INNER + D2_COS*cos2) + I2
    D2_COS = _l1 * _lc2
    PHI2 = _m2 * _lc2 * _g                    # phi2 = PHI2 * cos(t1 + t2 - pi/2)
    PHI1_W2 = -_m2 * _l1 * _lc2               # phi1 = PHI1_W2*w2**2*sin2 - PHI1_W1W2*w2*w1*sin2
    PHI1_W1W2 = 2 * _m2 * _l1 * _lc2          #        + PHI1_COS*cos(t1 - pi/2) + phi2
    PHI1_COS = (_m1 * _lc1 + _m2 * _l1) * _g
    DD2_W1 = _m2 * _l1 * _lc2                 # dd2 = (a + d2/d1*phi1 - DD2_W1*w1**2*sin2 - phi2)
    DD2_DEN = _m2 * _lc2**2 + _I2             #       / (DD2_DEN - d2**2/d1)
    # These factors are exactly 1.0 with Gymnasium's constants; multiplying by 1.0 is exact,
    # so those multiplications are skipped.
    assert _m2 == D1_COS == PHI1_W1W2 == 1.0
    del _m1, _m2, _l1, _lc1, _lc2, _I1, _I2, _g

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=_F32)
        return spaces.Box(low=-high, high=high, dtype=_F32), spaces.Discrete(3)

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        """See `BatchedClassicControlEnv`."""
        super().__init__(num_envs, render_mode, max_episode_steps, **kwargs)
        n = self.num_envs
        rk = self._rk
        self._k = [y[2:6] for y in rk]
        self._y_next = [y[0:4] for y in rk[1:]]
        self._rk_steps = [_const(self.dt / 2.0), _const(self.dt / 2.0), _const(self.dt)]
        self._rk_sixth = _const(self.dt / 6.0)
        self._k_sum = np.empty((4, n))
        self._k_tmp = np.empty((4, n))
        self._vel_low = np.repeat([[-self.MAX_VEL_1], [-self.MAX_VEL_2]], n, axis=1)
        self._vel_high = -self._vel_low
        self._torque = np.empty(n)
        self._obs_rows = rows = np.empty((6, n))  # [cos t1, sin t1, cos t2, sin t2, w1, w2]
        self._obs_row_views = (rows[0], rows[1], rows[2], rows[3], rows[4:6])
        self._reach = np.empty(n)
        self._abs_angles = np.empty((2, n))

        # Scratch for `_accelerations`, shared by the stages. Views are made once here: slicing
        # costs about as much as a ufunc call on these small arrays.
        work = np.empty((22, n))
        angles = work[0:4]  # [theta2, theta2, theta1 - pi/2, theta1 + theta2 - pi/2]
        vals = work[4:10]  # [cos t2, cos t2, cos(t1 - pi/2), cos(t1 + t2 - pi/2), w1**2, w2**2]
        terms = work[10:17]  # vals * factors (rows 0-1 then become -d1, d2), and w2*w1
        sin2, nphi1, num, den, tmp = work[17:22]
        factors = np.repeat([[-1.0], [self.D2_COS], [self.PHI1_COS], [self.PHI2], [self.DD2_W1],
                             [self.PHI1_W2]], n, axis=1)
        # (row-wise constants for the two first steps of [-d1, d2], see `_accelerations`)
        d_inner = np.repeat([[-self.D1_INNER], [self.D2_INNER]], n, axis=1)
        d_outer = np.repeat([[-self.D1_CONST], [self.LINK_MOI]], n, axis=1)
        neg_d1, d2, c_term, phi2, d_term, a_term, b_term = terms
        shared = (self._torque, angles[0], angles[1], angles[2], angles[3], angles[2:4], angles,
                  vals[0:4], sin2, vals[4:6], vals, factors, terms[0:6], b_term, d_term, a_term,
                  terms[0:2], d_inner, d_outer, neg_d1, d2, c_term, phi2, nphi1, num, den, tmp)
        # Per stage: theta1, theta2, [dtheta1, dtheta2], dtheta1, dtheta2, ddtheta1, ddtheta2
        self._stage_args = [(y[0], y[1], y[2:4], y[2], y[3], y[4], y[5]) + shared for y in rk]
        self._t1, self._t2, self._velocities = rk[0, 0], rk[0, 1], rk[0, 2:4]

    def _allocate_state(self) -> np.ndarray:
        # One (6, n) block per RK4 stage: rows 0-3 are the stage's input state y_i, rows 4-5 the
        # angular accelerations computed there. Rows 2-5 are then exactly the derivative k_i
        # ([dtheta1, dtheta2, ddtheta1, ddtheta2]), so no copying is needed. Stage 0's input is
        # the env state itself.
        self._rk = np.zeros((4, 6, self.num_envs))
        return self._rk[0, 0:4]

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        # Gymnasium keeps this state as float32 (so the first observation uses float32 trig).
        return rng.uniform(low=-0.1, high=0.1, size=(4,)).astype(_F32)

    @staticmethod
    def _accelerations(t1, t2, w, w1, w2, dd1, dd2, torque, angle_t2, angle_t2_copy, angle_a,
                       angle_b, angle_ab, angles, cosines, sin2, w_sq, vals, factors, scaled,
                       b_term, d_term, a_term, d_pair, d_inner, d_outer, neg_d1, d2, c_term, phi2,
                       nphi1, num, den, tmp) -> None:
        """`_dsdt`'s ddtheta1, ddtheta2 at one RK4 stage, written into dd1, dd2.

        Arguments are preallocated row views (see `__init__`). Each step is one of Gymnasium's
        float64 operations, in its order, except that d1 and phi1 are carried negated: IEEE
        rounding is symmetric, so -(x + y) == (-x) - y and x / d1 == -(x / -d1) exactly, and
        carrying the negations lets d1 and d2 be built together and spares a negation.
        """
        add, sub, mul, div = np.add, np.subtract, np.multiply, np.divide
        # one cos call for all four angles (plain item copies are the cheapest calls here)
        angle_t2[...] = t2
        angle_t2_copy[...] = t2
        angle_a[...] = t1
        add(t1, t2, angle_b)
        sub(angle_ab, _HALF_PI, angle_ab)  # theta1 - pi/2, theta1 + theta2 - pi/2
        np.cos(angles, cosines)
        np.sin(t2, sin2)
        np.float_power(w, _TWO, w_sq)  # w**2 on a NumPy float64 is libm pow(w, 2), not w*w
        # [-cos2, D2_COS*cos2, c_term = PHI1_COS*cos(t1 - pi/2), phi2 = PHI2*cos(t1 + t2 - pi/2),
        #  DD2_W1*w1**2, PHI1_W2*w2**2]
        mul(vals, factors, scaled)
        mul(w2, w1, b_term)  # PHI1_W1W2 * w2 * w1
        mul(d_term, sin2, d_term)
        mul(a_term, sin2, a_term)
        mul(b_term, sin2, b_term)
        # -d1 = -(((D1_CONST + (D1_INNER + cos2)) + I1) + I2),  d2 = (D2_INNER + D2_COS*cos2) + I2
        add(d_pair, d_inner, d_pair)
        add(d_pair, d_outer, d_pair)
        add(neg_d1, _MINUS_LINK_MOI, neg_d1)
        add(neg_d1, _MINUS_LINK_MOI, neg_d1)
        # -phi1 = -(((a_term - b_term) + c_term) + phi2)
        sub(b_term, a_term, nphi1)
        sub(nphi1, c_term, nphi1)
        sub(nphi1, phi2, nphi1)
        # ddtheta2 = (((torque + (d2/d1)*phi1) - d_term) - phi2) / (DD2_DEN - d2**2/d1)
        div(d2, neg_d1, num)  # -(d2/d1)
        mul(num, nphi1, num)  # (d2/d1)*phi1
        add(torque, num, num)
        sub(num, d_term, num)
        sub(num, phi2, num)
        np.float_power(d2, _TWO, den)
        div(den, neg_d1, den)  # -(d2**2/d1)
        add(_DD2_DEN, den, den)
        div(num, den, dd2)
        # ddtheta1 = -(d2*ddtheta2 + phi1) / d1 = (d2*ddtheta2 - (-phi1)) / (-d1)
        mul(d2, dd2, tmp)
        sub(tmp, nphi1, tmp)
        div(tmp, neg_d1, dd1)

    def _dynamics(self, state, action):
        np.subtract(action, _ONE, self._torque)  # torques [-1, 0, +1] for actions [0, 1, 2]
        accelerations, stage_args = self._accelerations, self._stage_args
        k, y_next, rk_steps = self._k, self._y_next, self._rk_steps
        k_sum, k_tmp = self._k_sum, self._k_tmp
        add, mul = np.add, np.multiply
        # rk4 over [0, dt]: stage i+1 starts at y0 + h_i * k_i, h = dt/2, dt/2, dt
        accelerations(*stage_args[0])
        for i in range(3):
            mul(k[i], rk_steps[i], k_tmp)
            add(state, k_tmp, y_next[i])
            accelerations(*stage_args[i + 1])
        # y = y0 + dt/6 * (((k1 + 2*k2) + 2*k3) + k4)
        mul(k[1], _TWO, k_tmp)
        add(k[0], k_tmp, k_sum)
        mul(k[2], _TWO, k_tmp)
        add(k_sum, k_tmp, k_sum)
        add(k_sum, k[3], k_sum)
        mul(k_sum, self._rk_sixth, k_sum)
        add(state, k_sum, state)

        # wrap() both angles into [-pi, pi] by whole turns, in Gymnasium's order (subtract while
        # above, then add while below); |angle| > pi is the cheap common test.
        angles = state[0:2]
        abs_angles = self._abs_angles
        np.absolute(angles, abs_angles)
        if np.count_nonzero(np.greater(abs_angles, _PI)):
            while np.count_nonzero(above := np.greater(angles, _PI)):
                np.subtract(angles, _TWO_PI, out=angles, where=above)
            while np.count_nonzero(below := np.less(angles, _MINUS_PI)):
                np.add(angles, _TWO_PI, out=angles, where=below)
        velocities = self._velocities
        np.maximum(velocities, self._vel_low, out=velocities)
        np.minimum(velocities, self._vel_high, out=velocities)

        # Gymnasium: -cos(t1) - cos(t2 + t1) > 1.0, which is exactly cos(t1) + cos(t1 + t2) < -1.0
        reach = self._reach
        add(self._t1, self._t2, reach)
        np.cos(reach, reach)
        add(reach, np.cos(self._t1), reach)
        terminated = np.less(reach, _MINUS_ONE)
        reward = terminated.astype(_F64)  # 0 on reaching the goal, else -1
        np.subtract(reward, _ONE, reward)
        return state, reward, terminated

    def _observe(self, state):
        # rows [cos t1, sin t1, cos t2, sin t2, w1, w2], transposed to (n, 6) float32
        if state is self._state:  # the per-step call: preallocated rows and views
            rows, (cos1, sin1, cos2, sin2, w) = self._obs_rows, self._obs_row_views
            t1, t2, velocities = self._t1, self._t2, self._velocities
        else:
            rows = np.empty((6, state.shape[1]))
            cos1, sin1, cos2, sin2, w = rows[0], rows[1], rows[2], rows[3], rows[4:6]
            t1, t2, velocities = state[0], state[1], state[2:4]
        np.cos(t1, cos1)
        np.sin(t1, sin1)
        np.cos(t2, cos2)
        np.sin(t2, sin2)
        w[...] = velocities
        return rows.T.astype(_F32)

    def _observe_initial(self, state):
        # Gymnasium's reset state is float32, so NumPy takes cos/sin in float32 for this one.
        state32 = state.astype(_F32)
        obs = np.empty((6, state.shape[1]), dtype=_F32)
        np.cos(state32[0:2], obs[0:4:2])
        np.sin(state32[0:2], obs[1:4:2])
        obs[4:6] = state32[2:4]
        return np.ascontiguousarray(obs.T)


# Constants of `AcrobotVectorEnv._accelerations` (a static method: no attribute lookups).
_MINUS_LINK_MOI = _const(-AcrobotVectorEnv.LINK_MOI)  # -I1, -I2
_DD2_DEN = _const(AcrobotVectorEnv.DD2_DEN)
