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
is Gymnasium's. The shared machinery lives in `base.BatchedClassicControlEnv`; each env is one module holding
only its dynamics. A new batched env is one new module here plus a line in `BATCHED_ENVS`.
"""

from __future__ import annotations

import inspect
from typing import Any

from gymnasium.vector import VectorEnv

from evorl_cli.envs.classic.acrobot import AcrobotVectorEnv
from evorl_cli.envs.classic.base import BatchedClassicControlEnv
from evorl_cli.envs.classic.cartpole import CartPoleVectorEnv
from evorl_cli.envs.classic.mountain_car import MountainCarVectorEnv
from evorl_cli.envs.classic.mountain_car_continuous import ContinuousMountainCarVectorEnv
from evorl_cli.envs.classic.pendulum import PendulumVectorEnv

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
