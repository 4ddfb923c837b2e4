"""Batched NumPy versions of Gymnasium's classic-control environments.

Each class here is a `gymnasium.vector.VectorEnv` that advances all of its sub-envs with a
handful of NumPy calls per step instead of one Python `Env.step` per sub-env, while producing
the same trajectories as `SyncVectorEnv([lambda: gym.make(env_id)] * n,
autoreset_mode=AutoresetMode.SAME_STEP)` seeded the same way:

* every sub-env owns a `np.random.Generator` made by `gymnasium.utils.seeding.np_random`, and
  (auto-)resets draw from it with the same call as Gymnasium's env, so initial states match;
* the dynamics repeat Gymnasium's floating-point operations in the same order and precision
  (float64 where Gymnasium computes on float64 scalars, float32 where it holds float32 state),
  which makes the results bit-identical. The one known exception is Pendulum's reward when the
  action is float32 (see `PendulumVectorEnv`).

Only the arithmetic is re-expressed; the behaviour (spaces, time limits, termination, rewards)
is Gymnasium's. The shared machinery lives in `BatchedClassicControlEnv`; the subclasses only
hold dynamics.
"""

from __future__ import annotations

import inspect
import math
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = [
    "BATCHED_ENVS",
    "AcrobotVectorEnv",
    "BatchedClassicControlEnv",
    "CartPoleVectorEnv",
    "ContinuousMountainCarVectorEnv",
    "MountainCarVectorEnv",
    "PendulumVectorEnv",
    "batched_options",
    "make_batched_env",
]

_F32 = np.float32
_F64 = np.float64
_UNSIGNED = {size: np.dtype(f"u{size}") for size in (1, 2, 4, 8)}


def _const(value: float) -> np.ndarray:
    """A float64 constant for ufunc calls on float64 arrays.

    A 0-d array costs less per call than a Python float (no scalar conversion) and gives the
    same float64 result. Only use it where both operands are float64: unlike a Python float,
    it would promote a float32 operand to float64.
    """
    return np.array(value, dtype=_F64)


_ONE = _const(1.0)
_TWO = _const(2.0)
_MINUS_ONE = _const(-1.0)
_C_0_1 = _const(0.1)
_PI = _const(math.pi)
_MINUS_PI = _const(-math.pi)
_TWO_PI = _const(math.pi - -math.pi)  # Acrobot's wrap(): `diff = M - m`; equals 2 * pi
_HALF_PI = _const(math.pi / 2.0)


class BatchedClassicControlEnv(VectorEnv):
    """Shared machinery of the batched classic-control envs.

    Owns per-sub-env seeding and random generators, step counting, truncation at
    `max_episode_steps`, same-step autoreset and the `final_obs` bookkeeping. A subclass
    describes one environment through:

    * `_build_spaces()`: the single-env observation and action spaces;
    * `_sample_initial_state(rng)`: one sub-env's initial state, drawn from its generator
      exactly as Gymnasium's `reset` draws it;
    * `_dynamics(state, action)`: one step of all sub-envs, returning
      `(state, reward, terminated)` (the state may be updated in place; reward and terminated
      must be new arrays, as they are handed to the caller);
    * `_observe(state)`: float32 observations of the given states (`state` has one column per
      sub-env, any number of columns);
    * optionally `_observe_initial(state)`, when the first observation of an episode is computed
      differently from the others.

    The state is a float64 array of shape `(state_dim, num_envs)`: one row per state variable,
    so that each variable is a contiguous vector for the ufuncs.

    Reset/step contract (what `SyncVectorEnv(..., autoreset_mode=SAME_STEP)` over
    `gym.make(env_id)` does):

    * `reset(seed=s)` seeds sub-env i with `s + i`; a list seeds each sub-env (entries may be
      None); None keeps each sub-env's generator, creating it from fresh entropy if it has none.
    * `step` returns float32 observations `(num_envs, obs_dim)`, float64 rewards and bool
      terminated/truncated. Truncated is True when the episode reaches `max_episode_steps`, also
      on a step that terminates (both are then True), like `TimeLimit`.
    * A sub-env that terminates or truncates is reset within the same step: its row of the
      returned observation is the first observation of the next episode, and
      `info["final_obs"]` (float32, shaped like the observations) holds the last observation of
      the finished episode in that row. `info["_final_obs"]` marks the finished sub-envs; rows of
      the others hold their current observation. `info["final_info"]` is `{}` with
      `info["_final_info"]` the same mask, as Gymnasium reports the (empty) infos of finished
      episodes. The keys are present on every step.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    env_id: ClassVar[str]
    default_max_episode_steps: ClassVar[int]
    state_dim: ClassVar[int]

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create `num_envs` sub-envs; call `reset` before stepping.

        Args:
            num_envs: number of sub-environments.
            render_mode: must be None; these envs do not render.
            max_episode_steps: episode length at which a sub-env is truncated; None for the
                registered spec's value.
            **kwargs: environment options; the subclasses take Gymnasium's constructor options
                by name, anything else is rejected.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        if render_mode is not None:
            raise ValueError(f"{type(self).__name__} does not render (render_mode={render_mode!r}); "
                             f"use gymnasium.make({self.env_id!r}, render_mode=...) to watch an episode")
        if not isinstance(num_envs, Integral) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if max_episode_steps is None:
            max_episode_steps = self.default_max_episode_steps
        if not isinstance(max_episode_steps, Integral) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")

        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = None
        self.single_observation_space, self.single_action_space = self._build_spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._state = self._allocate_state()
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._seeds: list[int | None] = [None] * self.num_envs
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        # 0-d arrays: cheaper ufunc operands than Python ints
        self._max_steps = np.array(self.max_episode_steps, dtype=np.int64)
        self._one_step = np.array(1, dtype=np.int64)
        self._needs_reset = True

        if isinstance(self.single_action_space, spaces.Discrete):
            self._action_shape: tuple[int, ...] = (self.num_envs,)
            self._num_actions = int(self.single_action_space.n)
            self._num_actions_array = np.array(self._num_actions, dtype=np.uint64)
        else:
            self._action_shape = (self.num_envs, *self.single_action_space.shape)
            self._num_actions = 0

    # ------------------------------------------------------------------ subclass interface

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        """The single-env (observation, action) spaces, equal to Gymnasium's."""
        raise NotImplementedError

    def _allocate_state(self) -> np.ndarray:
        """The `(state_dim, num_envs)` float64 state array (a subclass may return a view)."""
        return np.zeros((self.state_dim, self.num_envs), dtype=_F64)

    def _sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        """One sub-env's initial state (length `state_dim`), drawn as Gymnasium's `reset` does."""
        raise NotImplementedError

    def _dynamics(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every sub-env one step: `(new state, float64 reward, bool terminated)`."""
        raise NotImplementedError

    def _observe(self, state: np.ndarray) -> np.ndarray:
        """float32 observations, shape `(columns of state, obs_dim)`, of states reached by a step."""
        raise NotImplementedError

    def _observe_initial(self, state: np.ndarray) -> np.ndarray:
        """float32 observations of freshly reset states (by default the same as `_observe`)."""
        return self._observe(state)

    # ------------------------------------------------------------------ VectorEnv API

    @property
    def np_random(self) -> tuple[np.random.Generator | None, ...]:
        """The sub-envs' random generators (as `SyncVectorEnv.np_random`); None before a reset."""
        return tuple(self._rngs)

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        """The seeds the sub-envs' generators were made from (entropy-drawn ones included)."""
        return tuple(self._seeds)

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env and return `(observations, {})`.

        Args:
            seed: None, an int (sub-env i gets `seed + i`) or one seed (int or None) per sub-env.
            options: not supported (must be None or empty): Gymnasium's reset-bound options
                and `reset_mask` are not implemented.
        """
        if options:
            raise ValueError(f"{type(self).__name__}.reset does not support options, got {sorted(options)}")
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, Integral):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} sub-envs")
        for i, env_seed in enumerate(seeds):
            # Like `Env.reset(seed=None)`: keep the generator, create one only if there is none.
            if env_seed is not None or self._rngs[i] is None:
                self._rngs[i], self._seeds[i] = seeding.np_random(env_seed)
        all_envs = np.arange(self.num_envs)
        self._reset_envs(all_envs)
        self._needs_reset = False
        return self._observe_initial(self._state), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env, resetting the finished ones in the same step (see the class doc)."""
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        actions = self._check_actions(actions)
        self._state, reward, terminated = self._dynamics(self._state, actions)
        steps = self._steps
        np.add(steps, self._one_step, steps)
        truncated = np.greater_equal(steps, self._max_steps)
        obs = self._observe(self._state)
        done = np.logical_or(terminated, truncated)
        if np.count_nonzero(done):
            final_obs = obs.copy()
            finished = np.flatnonzero(done)
            self._reset_envs(finished)
            obs[finished] = self._observe_initial(self._state[:, finished])
        else:
            final_obs = obs  # no row is read; spares a copy on most steps
        info = {"final_obs": final_obs, "_final_obs": done, "final_info": {}, "_final_info": done}
        return obs, reward, terminated, truncated, info

    def save_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a step depends on, as (JSON-ready dict, arrays): the state, the step counts
        and each sub-env's generator. `load_state` of it continues the envs exactly."""
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}: nothing to save before the first reset()")
        rngs = [rng.bit_generator.state for rng in self._rngs]
        return {"rngs": rngs, "seeds": list(self._seeds)}, {"state": self._state.copy(), "steps": self._steps.copy()}

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue from what `save_state` returned (same env, same number of sub-envs)."""
        if len(meta["rngs"]) != self.num_envs or arrays["state"].shape != self._state.shape:
            raise ValueError(f"{type(self).__name__}: saved state is for another number of sub-envs")
        self._state[...] = arrays["state"]  # in place: a subclass may hold views of it
        self._steps[...] = arrays["steps"]
        self._seeds = list(meta["seeds"])
        self._rngs = []
        for saved in meta["rngs"]:
            rng, _ = seeding.np_random(0)
            rng.bit_generator.state = saved
            self._rngs.append(rng)
        self._needs_reset = False

    def render(self) -> None:
        """Not supported: these envs have no renderer."""
        raise NotImplementedError(f"{type(self).__name__} does not render")

    # ------------------------------------------------------------------ helpers

    def _reset_envs(self, envs: np.ndarray) -> None:
        """Draw new initial states for the given sub-envs from their own generators."""
        state = self._state
        for i in envs:
            state[:, i] = self._sample_initial_state(self._rngs[i])
        self._steps[envs] = 0

    def _check_actions(self, actions: Any) -> np.ndarray:
        """Actions as an array of the batched action space's shape.

        Discrete actions must be integers in range (Gymnasium asserts or indexes with them).
        Continuous float32/float64 actions are passed on unchanged, because Gymnasium's
        arithmetic follows the action's dtype; other dtypes become float64.
        """
        actions = np.asarray(actions)
        name = type(self).__name__
        if actions.shape != self._action_shape:
            raise ValueError(f"{name}: actions have shape {actions.shape}, expected {self._action_shape}")
        if self._num_actions:
            if actions.dtype.kind not in "iu":
                raise TypeError(f"{name}: discrete actions must be integers, got {actions.dtype}")
            # Viewed as unsigned, negative actions become huge: one comparison checks both ends.
            unsigned = actions.view(_UNSIGNED[actions.dtype.itemsize])
            if np.count_nonzero(np.greater_equal(unsigned, self._num_actions_array)):
                raise ValueError(f"{name}: actions must be in [0, {self._num_actions}), got {actions}")
        elif actions.dtype != _F32 and actions.dtype != _F64:
            actions = actions.astype(_F64)
        return actions


# ====================================================================== CartPole-v1


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


# ====================================================================== Acrobot-v1


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


# ====================================================================== Pendulum-v1


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


# ====================================================================== MountainCar-v0


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


# ====================================================================== MountainCarContinuous-v0


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


# ====================================================================== registry

BATCHED_ENVS: dict[str, type[BatchedClassicControlEnv]] = {
    cls.env_id: cls
    for cls in (
        CartPoleVectorEnv,
        AcrobotVectorEnv,
        PendulumVectorEnv,
        MountainCarVectorEnv,
        ContinuousMountainCarVectorEnv,
    )
}


def make_batched_env(
    env_id: str, num_envs: int, max_episode_steps: int | None = None, **kwargs: Any
) -> VectorEnv | None:
    """A batched NumPy vector env for `env_id`, or None if `env_id` has no batched version.

    `max_episode_steps=None` uses the registered spec's value; `kwargs` are the env's options
    (e.g. `g` for Pendulum-v1), unknown ones raise TypeError.
    """
    cls = BATCHED_ENVS.get(env_id)
    if cls is None:
        return None
    return cls(num_envs=num_envs, max_episode_steps=max_episode_steps, **kwargs)


_NOT_OPTIONS = ("self", "num_envs", "render_mode", "max_episode_steps")


def batched_options(env_id: str) -> frozenset[str] | None:
    """The environment options (Gymnasium's constructor keywords, e.g. `g` for Pendulum-v1) that the
    batched `env_id` takes; None if `env_id` has no batched version.

    Read from the constructors along the class hierarchy: each passes unknown keywords up to its
    base, so an option taken by any of them is accepted.
    """
    cls = BATCHED_ENVS.get(env_id)
    if cls is None:
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(
        name
        for klass in cls.__mro__
        if "__init__" in vars(klass) and issubclass(klass, BatchedClassicControlEnv)
        for name, param in inspect.signature(vars(klass)["__init__"]).parameters.items()
        if param.kind in named and name not in _NOT_OPTIONS
    )
