"""`env.backend=envpool`: EnvPool's C++ vector envs behind the same contract as the other backends.

EnvPool (optional extra: `pip install 'evorl-cli[envpool]'`) covers classic control, Box2D, MuJoCo,
Atari and more with C++ environments stepped on a thread pool. Its Gymnasium API differs from what
`EnvBatch` expects in two ways this adapter hides:

* Autoreset. EnvPool resets a finished sub-env on the *next* `step` call (Gymnasium's NEXT_STEP
  mode: that call ignores the env's action and returns the reset observation with reward 0).
  `EnvBatch` wants SAME_STEP: the step that ends an episode already returns the next episode's first
  observation, with the last one in `info["final_obs"]` / `info["_final_obs"]`. So after every step
  the adapter resets just the finished sub-envs (`pool.reset(env_ids)`), which leaves EnvPool's own
  next-step reset with nothing to do.
* Seeding. EnvPool fixes each sub-env's seed when the pool is made (`seed=int` gives sub-env i the
  seed `seed + i`, a list gives each its own) and ignores `reset(seed=...)`. Gymnasium's
  `reset(seed=...)` reseeds, so here a seeded reset makes a new pool with those seeds (cheap for
  classic control and MuJoCo, a few hundred ms for Atari); an unseeded reset continues each
  sub-env's random stream, as in Gymnasium. Seeds are taken modulo 2**31 (EnvPool wants int32).

What is NOT the same as the Gymnasium backend: EnvPool's environments are separate C++
implementations with their own random number generators, so a given seed gives different starting
states (and runs are not trajectory-for-trajectory equal to `env.backend=gymnasium`); they are
reproducible from run to run within EnvPool. Some tasks also have different defaults: EnvPool's
Atari ids (`Pong-v5` for Gymnasium's `ALE/Pong-v5`) come preprocessed (84x84 grey frames, 4 stacked,
frame skip 4, no sticky actions; observations uint8 [4, 84, 84], channels first); EnvPool's options
for a task are set through `env.kwargs` (e.g. `env.kwargs={stack_num:1}`).
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from evorl_cli.errors import EvorlError

INSTALL_HINT = ("env.backend=envpool needs the envpool package: pip install 'evorl-cli[envpool]' "
                "(EnvPool has wheels for CPython 3.11+ on Linux x86_64/aarch64, macOS arm64 and Windows x86_64)")
MIN_VERSION = (1, 2)
# make() arguments the adapter owns: the contract needs a synchronous pool of exactly num_envs envs.
RESERVED_KWARGS = ("num_envs", "batch_size", "seed", "env_seed", "env_type", "render_mode", "max_episode_steps")
SEED_MODULUS = 2**31


def import_envpool() -> Any:
    """The envpool module, or one EvorlError line saying how to get it."""
    try:
        import envpool
    except ImportError:
        raise EvorlError(INSTALL_HINT) from None
    version = getattr(envpool, "__version__", "0")
    try:
        parsed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        parsed = MIN_VERSION  # a development build: trust it
    if parsed < MIN_VERSION:
        raise EvorlError(f"env.backend=envpool needs envpool>={'.'.join(map(str, MIN_VERSION))} "
                         f"(found {version}): pip install -U 'evorl-cli[envpool]'")
    return envpool


def envpool_task_id(env_id: str) -> str:
    """EnvPool's id for a Gymnasium id (`ALE/Pong-v5` -> `Pong-v5`; most ids are the same)."""
    envpool = import_envpool()
    known = envpool.list_all_envs()
    if env_id in known:
        return env_id
    if env_id.startswith("ALE/") and env_id[len("ALE/"):] in known:
        return env_id[len("ALE/"):]
    close = difflib.get_close_matches(env_id.removeprefix("ALE/"), known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EvorlError(f"env.id={env_id}: EnvPool has no such task; {hint}python -c 'import envpool; "
                     f"print(envpool.list_all_envs())' lists its {len(known)} ids")


ATARI_PREPROCESSING = "gymnasium.wrappers.AtariPreprocessing"
FRAME_STACK = "gymnasium.wrappers.FrameStackObservation"
# AtariPreprocessing's options (with Gymnasium's defaults) -> EnvPool's names for the same thing.
_ATARI_OPTIONS = {"noop_max": ("noop_max", 30), "frame_skip": ("frame_skip", 4),
                  "screen_size": ("img_height", 84), "terminal_on_life_loss": ("episodic_life", False),
                  "grayscale_obs": ("gray_scale", True)}


def _target(spec: Any) -> str:
    target = str(spec.get("_target_", "")) if hasattr(spec, "get") else ""
    return target.replace(".atari_preprocessing.", ".").replace(".stateful_observation.", ".")


def atari_preprocessing_kwargs(env_id: str, wrappers: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """EnvPool's options for an Atari task configured for Gymnasium as the Atari presets are
    (ALE env with `frameskip=1`, then AtariPreprocessing and FrameStackObservation): EnvPool applies
    the same preprocessing in C++, so those wrappers become its own options (and its fire-reset,
    which Gymnasium's wrappers do not do, is switched off). None for anything else."""
    if not env_id.startswith("ALE/") or [_target(w) for w in wrappers] != [ATARI_PREPROCESSING, FRAME_STACK]:
        return None
    if set(kwargs) - {"frameskip", "repeat_action_probability"} or kwargs.get("frameskip", 1) != 1:
        return None
    preprocessing, stack = (dict(w) for w in wrappers)
    extra = set(preprocessing) - set(_ATARI_OPTIONS) - {"_target_"}
    if extra or set(stack) - {"_target_", "stack_size"} or not preprocessing.get("grayscale_obs", True):
        return None  # options EnvPool has no equivalent for (or colour frames, which it cannot stack)
    options = {ours: preprocessing.get(theirs, default) for theirs, (ours, default) in _ATARI_OPTIONS.items()}
    options.update(img_width=options["img_height"], stack_num=int(stack.get("stack_size", 4)), use_fire_reset=False,
                   repeat_action_probability=float(kwargs.get("repeat_action_probability", 0.25)))
    return options


def _seed_list(seed: int | Sequence[int], num_envs: int) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        return [(int(seed) + i) % SEED_MODULUS for i in range(num_envs)]
    seeds = [int(s) % SEED_MODULUS for s in seed]
    if len(seeds) != num_envs:
        raise ValueError(f"reset(seed=list) needs {num_envs} seeds, got {len(seeds)}")
    return seeds


class EnvPoolVectorEnv(VectorEnv):
    """A Gymnasium `VectorEnv` with SAME_STEP autoreset (DISABLED when rendering) over an EnvPool pool.

    The pool itself is made at the first `reset` (and again at every seeded reset); the spaces come
    from EnvPool's spec, so making this object is cheap and checks `kwargs` early.
    """

    def __init__(self, env_id: str, num_envs: int, *, max_episode_steps: int | None = None,
                 kwargs: dict[str, Any] | None = None, render_mode: str | None = None) -> None:
        self._envpool = import_envpool()
        self.task_id = envpool_task_id(env_id)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.autoreset = render_mode is None
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP if self.autoreset else AutoresetMode.DISABLED,
                         "render_modes": ["rgb_array"]}
        kwargs = dict(kwargs or {})
        reserved = [k for k in kwargs if k in RESERVED_KWARGS]
        if reserved:
            raise EvorlError(f"env.kwargs.{reserved[0]}: set by evorl itself with env.backend=envpool "
                             "(env.num_envs, seed, env.max_episode_steps)")
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(max_episode_steps)
        self._spec_kwargs = kwargs
        self._make_kwargs = dict(kwargs, **({"render_mode": render_mode} if render_mode else {}))
        try:
            with warnings.catch_warnings():  # "Box low's precision lowered by casting to float32"
                warnings.simplefilter("ignore", UserWarning)
                spec = self._envpool.make_spec(self.task_id, **kwargs)
                self.single_observation_space = spec.gymnasium_observation_space
                self.single_action_space = spec.gymnasium_action_space
        except Exception as exc:
            raise EvorlError(self._kwargs_error(exc)) from None
        self.observation_space = self.single_observation_space  # batched spaces are not used by EnvBatch
        self.action_space = self.single_action_space
        self._all_ids = np.arange(num_envs, dtype=np.int32)
        self._pool: Any = None
        self.seeds: list[int] | None = None  # each sub-env's seed in the current pool

    def _kwargs_error(self, exc: Exception) -> str:
        try:
            fields = [f for f in self._envpool.make_spec(self.task_id).config._fields
                      if f not in RESERVED_KWARGS and f not in ("num_threads", "max_num_players", "base_path",
                                                                "thread_affinity_offset", "gym_reset_return_info")]
        except Exception:
            fields = []
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        takes = f"; it takes {', '.join(fields)}" if fields else ""
        return f"env.kwargs={self._spec_kwargs}: EnvPool's {self.task_id} rejects them ({reason}){takes}"

    def _new_pool(self, seeds: list[int]) -> None:
        self.close()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._pool = self._envpool.make(self.task_id, env_type="gymnasium", num_envs=self.num_envs,
                                                seed=seeds, **self._make_kwargs)
                self._pool.observation_space  # built lazily, with the float32 warning, on the first step
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EvorlError(f"env.id={self.task_id}: EnvPool could not create the environment: {reason}") from None
        self.seeds = seeds

    @staticmethod
    def _in_env_order(ids: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """A synchronous pool answers in env-id order; reorder if it ever does not."""
        if np.array_equal(ids, np.arange(len(ids))):
            return arrays
        order = np.argsort(ids)
        return tuple(a[order] for a in arrays)

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Seeded: a fresh pool with sub-env i seeded `seed + i` (or `seed[i]`); unseeded: EnvPool's reset."""
        if options:
            raise ValueError("EnvPoolVectorEnv.reset takes no options")
        if seed is not None:
            self._new_pool(_seed_list(seed, self.num_envs))
        elif self._pool is None:
            self._new_pool(_seed_list(0, self.num_envs))
        obs, info = self._pool.reset()
        ids = np.asarray(info["env_id"])
        obs, elapsed = self._in_env_order(ids, np.asarray(obs), np.asarray(info["elapsed_step"]))
        return obs, {"elapsed_step": elapsed}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._pool is None:
            raise RuntimeError("reset() the env before step()")
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        obs, reward, terminated, truncated, elapsed = self._in_env_order(
            np.asarray(info["env_id"]), np.asarray(obs), np.asarray(reward), np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool), np.asarray(info["elapsed_step"]))
        out: dict[str, Any] = {"elapsed_step": elapsed}
        done = terminated | truncated
        if self.autoreset and done.any():
            final_obs = obs
            obs = obs.copy()
            elapsed = elapsed.copy()
            reset_obs, reset_info = self._pool.reset(self._all_ids[done])
            reset_ids = np.asarray(reset_info["env_id"])
            obs[reset_ids] = reset_obs
            elapsed[reset_ids] = np.asarray(reset_info["elapsed_step"])
            out = {"elapsed_step": elapsed, "final_obs": final_obs, "_final_obs": done,
                   "final_elapsed_step": np.where(done, out["elapsed_step"], 0)}
        return obs, reward, terminated, truncated, out

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        if name == "render":
            return tuple(self.render())
        raise AttributeError(f"EnvPoolVectorEnv.call supports only 'render', not {name!r}")

    def render(self) -> np.ndarray:
        """Every sub-env's rgb_array frame, stacked [num_envs, H, W, 3]."""
        if self._pool is None:
            raise RuntimeError("reset() the env before render()")
        return self._pool.render(env_ids=self._all_ids)

    def close(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def check_envpool_id(env_id: str) -> None:
    """Fail early on a missing envpool package or an id it does not have."""
    envpool_task_id(env_id)
