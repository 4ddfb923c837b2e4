"""The shared machinery of the batched classic-control envs (`BatchedClassicControlEnv`) and the
float64 constants their dynamics use; each env is one module of this package holding only its
dynamics."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

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
