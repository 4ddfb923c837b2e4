"""One vector env for the whole population, with the observation/action conversions PPO needs.

Whatever the backend (our batched NumPy classic-control envs, Gymnasium's SyncVectorEnv or, with the
optional extra, EnvPool through `envs/envpool_env.py`), the
trainer sees the same thing: `P * N` sub-envs with same-step autoreset, float32 observation
vectors (Discrete observations one-hot encoded, masked entries zeroed) and, for every finished
episode, its final observation so truncated episodes can be bootstrapped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from evorl_cli.config import EnvConfig
from evorl_cli.envs.classic.base import BatchedClassicControlEnv
from evorl_cli.envs.mujoco_camera import FollowTrackedBody
from evorl_cli.envs.mujoco_warnings import quiet_gymnasium_model_deprecations
from evorl_cli.errors import EnvFault, EvorlError
from evorl_cli.nets.policy import ActionSpec


@dataclass
class Transition:
    obs: np.ndarray  # [M, D] float32, already reset where an episode ended
    reward: np.ndarray  # [M] float32
    terminated: np.ndarray  # [M] bool
    truncated: np.ndarray  # [M] bool
    final_obs: np.ndarray | None  # [M, D] float32, rows valid where terminated|truncated; None if none ended


# Gymnasium env families that need an optional package, by where their code lives:
# (entry-point module prefix, what is missing, our extra that installs it).
OPTIONAL_FAMILIES = (
    ("gymnasium.envs.box2d", "Box2D", "box2d"),
    ("gymnasium.envs.mujoco", "MuJoCo", "mujoco"),
    ("ale_py", "the Arcade Learning Environment (ale-py)", "atari"),
)


def entry_point(env_id: str) -> str:
    """Where a registered env's code lives ("" when Gymnasium does not know the id yet)."""
    if env_id.startswith("ALE/"):
        return "ale_py"
    return str(gym.spec(env_id).entry_point) if env_id in gym.registry else ""


def missing_dependency(env_id: str, wrapper_message: str = "") -> str:
    """The one line for an env whose optional dependency is not installed, naming our extra
    (Gymnasium's own hint names its extras, not ours); `wrapper_message`: what a wrapper said instead."""
    entry = entry_point(env_id)
    for prefix, what, extra in OPTIONAL_FAMILIES:
        if entry.startswith(prefix):
            if wrapper_message:  # the env is there, a wrapper's package (the same extra installs it) is not
                return f'env.id={env_id}: a wrapper needs a package: pip install "evorl-cli[{extra}]" ({wrapper_message})'
            return f'env.id={env_id} needs {what}: pip install "evorl-cli[{extra}]"'
    if wrapper_message:
        return f"env.id={env_id}: a wrapper needs a package that is not installed ({wrapper_message})"
    return f"env.id={env_id}: a package it needs is not installed"


def check_env_id(env_id: str, backend: str = "auto") -> None:
    """Fail early, with suggestions, on an id Gymnasium (or, for env.backend=envpool, EnvPool) does not know."""
    if backend == "envpool":
        from evorl_cli.envs.envpool_env import check_envpool_id

        check_envpool_id(env_id)
        return
    if ":" in env_id:  # "module:Env-v0" registers on import inside gymnasium.make
        return
    if env_id.startswith("ALE/") and env_id not in gym.registry:
        try:  # Atari ids are registered by importing ale_py, which Gymnasium does not do itself
            import ale_py

            gym.register_envs(ale_py)
        except ImportError:
            raise EvorlError(missing_dependency(env_id)) from None
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "any registered Gymnasium id works"
        raise EvorlError(f"env.id={env_id}: unknown environment; {hint}")


@dataclass
class ObsEncoder:
    """Turns a batch of raw observations into float32 rows [B, dim] the networks read.

    Discrete: one-hot. 1-D Box: as is. Images (2-D or 3-D Box): channels first ([C, H, W], moved
    from [H, W, C] when `channels_last`), uint8 scaled to [0, 1], flattened; `image` keeps the shape.
    """

    dim: int
    image: tuple[int, int, int] | None
    encode: Callable[[np.ndarray], np.ndarray]

    def __call__(self, obs) -> np.ndarray:
        return self.encode(np.asarray(obs))


def describe_space(space: gym.Space, limit: int = 80) -> str:
    """A space's repr on one line, shortened (a Box's bounds can print as whole arrays)."""
    text = " ".join(repr(space).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


SUPPORTED_OBS = "evorl reads Box observations (vectors, or images of 2-3 dims) and Discrete ones"
SUPPORTED_ACTIONS = "evorl's PPO acts in Discrete, 1-D MultiDiscrete, 1-D MultiBinary or 1-D Box action spaces"


def observation_encoder(space: gym.Space, channels_last: bool = False, env_id: str = "?") -> ObsEncoder:
    """The encoder for a supported observation space; a one-line EvorlError that names the fix otherwise."""
    if isinstance(space, spaces.Discrete):
        eye = np.eye(space.n, dtype=np.float32)
        return ObsEncoder(int(space.n), None, lambda obs: eye[obs.astype(np.int64).reshape(-1) - space.start])
    if isinstance(space, spaces.Box) and len(space.shape) <= 1:
        dim = int(np.prod(space.shape, dtype=np.int64)) if space.shape else 1
        return ObsEncoder(dim, None, lambda obs: obs.astype(np.float32, copy=False).reshape(-1, dim))
    if isinstance(space, spaces.Box) and len(space.shape) in (2, 3):
        shape = space.shape if len(space.shape) == 3 else ((*space.shape, 1) if channels_last else (1, *space.shape))
        c, h, w = (shape[2], shape[0], shape[1]) if channels_last else shape
        scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0

        def encode(obs: np.ndarray) -> np.ndarray:
            obs = obs.reshape(-1, *shape)
            if channels_last:
                obs = obs.transpose(0, 3, 1, 2)
            return (obs.astype(np.float32) * scale).reshape(obs.shape[0], -1)

        return ObsEncoder(c * h * w, (int(c), int(h), int(w)), encode)
    try:  # what Gymnasium's FlattenObservation would make of it: the fix, if it is a vector
        flat = spaces.utils.flatten_space(space)
    except Exception:
        flat = None
    if isinstance(flat, spaces.Box) and len(flat.shape) == 1:
        fix = (f"flatten them to a vector of {flat.shape[0]} with "
               "env.wrappers=[{_target_: gymnasium.wrappers.FlattenObservation}]")
    else:
        fix = "wrap the env in a gymnasium.ObservationWrapper of your own that returns a Box"
    raise EvorlError(f"env.id={env_id} observes {describe_space(space)}, which is not supported "
                     f"({SUPPORTED_OBS}): {fix}")


def action_spec(space: gym.Space, env_id: str = "?") -> ActionSpec:
    """What the policy head produces for a supported action space; a one-line EvorlError otherwise."""
    if isinstance(space, spaces.Discrete):
        return ActionSpec(discrete=True, n=int(space.n))
    # One independent categorical per entry (a MultiBinary entry: a choice of 2).
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return ActionSpec(discrete=True, n=int(space.nvec.sum()), nvec=tuple(int(k) for k in space.nvec))
    if isinstance(space, spaces.MultiBinary) and np.ndim(space.n) == 0:
        return ActionSpec(discrete=True, n=2 * int(space.n), nvec=(2,) * int(space.n))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return ActionSpec(discrete=False, n=int(space.shape[0]), low=space.low.astype(np.float32),
                          high=space.high.astype(np.float32))
    # The fix: an ActionWrapper that exposes one supported space and decodes it into this one.
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        exposed = (f"a 1-D {type(space).__name__} of {int(np.prod(space.shape, dtype=np.int64))} entries "
                   f"reshaped to {space.shape}")
    elif isinstance(space, spaces.Box):
        exposed = f"a 1-D Box of {int(np.prod(space.shape, dtype=np.int64))} reshaped to {space.shape}"
    else:
        exposed = "one Discrete or 1-D Box action"
    raise EvorlError(f"env.id={env_id} acts in {describe_space(space)}, which is not supported "
                     f"({SUPPORTED_ACTIONS}): wrap the env in a gymnasium.ActionWrapper of your own that "
                     f"takes {exposed} (env.wrappers=[{{_target_: your_module.YourWrapper}}])")


class EnvBatch:
    """`num_envs` sub-envs stepped together; see the module docstring for the contract."""

    def __init__(self, cfg: EnvConfig, num_envs: int, render_mode: str | None = None,
                 purpose: str = "evaluation") -> None:
        """`render_mode` set: Gymnasium envs without autoreset, so the last frame of an episode
        can be drawn (the caller resets). `purpose` (training, evaluation, ...) names these envs in
        the one-line error for an env that raises or returns NaN."""
        check_env_id(cfg.id, cfg.backend)
        self.num_envs = num_envs
        self.env_id, self.purpose = cfg.id, purpose
        self.env_steps = 0  # steps played, summed over the sub-envs
        self.env = self._make_vector_env(cfg, num_envs, render_mode)
        self.backend_name = type(self.env).__name__
        # Our NumPy envs step all sub-envs in a few array operations, so their cost hardly grows
        # with the count (Acrobot: 68 microseconds a step for 100, 97 for 200); Gymnasium's vector
        # envs step each sub-env in turn.
        self.vectorised = isinstance(self.env, BatchedClassicControlEnv)
        try:
            self._conversions(cfg)
        except EvorlError:
            self.env.close()
            raise

    def _conversions(self, cfg: EnvConfig) -> None:
        """How observations reach the networks and actions reach the env; refuses what cannot."""
        self.encoder = observation_encoder(self.env.single_observation_space, cfg.channels_last, cfg.id)
        self.obs_dim, self.image = self.encoder.dim, self.encoder.image
        self.action = action_spec(self.env.single_action_space, cfg.id)
        space = self.env.single_action_space
        # Discrete actions are indices 0..n-1 to the policy; the env's may start elsewhere.
        start = getattr(space, "start", 0) if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)) else 0
        self._action_start = np.asarray(start, dtype=np.int64) if np.any(start) else None
        self._obs_mask = None
        if cfg.mask_indices:
            bad = [i for i in cfg.mask_indices if not -self.obs_dim <= i < self.obs_dim]
            if bad:
                raise EvorlError(f"env.mask_indices={list(cfg.mask_indices)}: index {bad[0]} is outside "
                                 f"the observation (size {self.obs_dim})")
            self._obs_mask = np.ones(self.obs_dim, dtype=np.float32)
            self._obs_mask[list(cfg.mask_indices)] = 0.0

    @staticmethod
    def _batched_env(cfg: EnvConfig, num_envs: int) -> gym.vector.VectorEnv | None:
        """Our batched NumPy env when it can apply everything `cfg` asks for, else None (backend=auto
        then uses Gymnasium's env); backend=numpy raises instead, as no setting may be dropped."""
        from evorl_cli.envs.classic import BATCHED_ENVS, batched_options, make_batched_env

        options = batched_options(cfg.id)
        unknown = sorted(set(cfg.kwargs) - (options or set()))
        if cfg.backend == "numpy":
            if options is None:
                raise EvorlError(f"env.backend=numpy: no batched implementation of {cfg.id} "
                                 f"(have: {', '.join(BATCHED_ENVS)}); use env.backend=auto")
            if cfg.wrappers:
                raise EvorlError("env.backend=numpy cannot apply env.wrappers; use env.backend=auto or gymnasium")
            if unknown:
                takes = f"it takes {', '.join(sorted(options))}" if options else "it takes none"
                raise EvorlError(f"env.backend=numpy: the batched {cfg.id} has no option env.kwargs.{unknown[0]} "
                                 f"({takes}); use env.backend=auto or gymnasium")
        elif options is None or cfg.wrappers or unknown:
            return None
        try:
            return make_batched_env(cfg.id, num_envs, max_episode_steps=cfg.max_episode_steps, **cfg.kwargs)
        except (TypeError, ValueError) as exc:  # an option of the wrong type, e.g. env.kwargs.g=abc
            raise EvorlError(f"env.kwargs={dict(cfg.kwargs)}: {cfg.id} rejects them: {exc}") from None

    @staticmethod
    def _make_vector_env(cfg: EnvConfig, num_envs: int, render_mode: str | None) -> gym.vector.VectorEnv:
        if cfg.backend == "envpool":
            from evorl_cli.envs.envpool_env import EnvPoolVectorEnv, atari_preprocessing_kwargs

            kwargs = dict(cfg.kwargs)
            if cfg.wrappers:  # the Atari presets' preprocessing is built into EnvPool's Atari tasks
                kwargs = atari_preprocessing_kwargs(cfg.id, list(cfg.wrappers), kwargs)
                if kwargs is None:
                    raise EvorlError("env.wrappers: Gymnasium wrappers cannot wrap an EnvPool pool; use "
                                     "env.backend=gymnasium, or EnvPool's own options through env.kwargs")
            return EnvPoolVectorEnv(cfg.id, num_envs, max_episode_steps=cfg.max_episode_steps,
                                    kwargs=kwargs, render_mode=render_mode)
        # The batched envs do not render, so watching an episode always takes Gymnasium's env.
        if cfg.backend in ("numpy", "auto") and render_mode is None:
            env = EnvBatch._batched_env(cfg, num_envs)
            if env is not None:
                return env

        uses_mujoco = entry_point(cfg.id).startswith("gymnasium.envs.mujoco")

        def make_one() -> gym.Env:
            if uses_mujoco:
                quiet_gymnasium_model_deprecations()
            kwargs = dict(cfg.kwargs)
            if render_mode is not None:  # not every env accepts render_mode=None
                kwargs["render_mode"] = render_mode
            env = gym.make(cfg.id, max_episode_steps=cfg.max_episode_steps, **kwargs)
            if uses_mujoco and render_mode is not None:
                env = FollowTrackedBody(env)
            for wrapper in cfg.wrappers:
                from hydra.utils import instantiate

                env = instantiate(wrapper, env=env)
            return env

        try:
            mode = AutoresetMode.SAME_STEP if render_mode is None else AutoresetMode.DISABLED
            # async: each sub-env steps in its own process, which pays where a step costs more than
            # the hand-over (Box2D, MuJoCo); watching an episode always takes one process.
            if cfg.vector == "async" and render_mode is None and num_envs > 1:
                return gym.vector.AsyncVectorEnv([make_one for _ in range(num_envs)], autoreset_mode=mode)
            return gym.vector.SyncVectorEnv([make_one for _ in range(num_envs)], autoreset_mode=mode)
        except EvorlError:
            raise
        except gym.error.DependencyNotInstalled:
            raise EvorlError(missing_dependency(cfg.id)) from None
        except Exception as exc:  # gymnasium raises many types for a bad id, kwargs or missing extra
            cause: BaseException | None = exc
            while cause is not None:  # Hydra wraps what a wrapper raised, e.g. AtariPreprocessing's
                if isinstance(cause, gym.error.DependencyNotInstalled):  # missing opencv
                    raise EvorlError(missing_dependency(cfg.id, " ".join(str(cause).split()))) from None
                cause = cause.__cause__ or cause.__context__
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EvorlError(f"env.id={cfg.id}: could not create the environment: {reason}") from None

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Raw observations -> the float32 rows the networks read (encoded, masked)."""
        obs = self.encoder(raw)
        return obs * self._obs_mask if self._obs_mask is not None else obs

    def reset(self, seed: int | list[int]) -> np.ndarray:
        """Reset every sub-env; an int seeds sub-env i with `seed + i`, a list seeds each one."""
        try:
            raw, _ = self.env.reset(seed=seed)
        except Exception as exc:
            raise self._fault("reset", exc) from exc
        return self._finite(self.prepare(raw), "observation", "reset")

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as the env takes them: continuous ones clipped to the bounds,
        discrete indices shifted to where the env's Discrete space starts."""
        if not self.action.discrete:
            return np.clip(actions, self.action.low, self.action.high)
        return actions if self._action_start is None else actions + self._action_start

    def step(self, actions: np.ndarray) -> Transition:
        try:
            raw, reward, terminated, truncated, info = self.env.step(self.env_actions(actions))
        except Exception as exc:
            raise self._fault("step", exc) from exc
        final = None
        if "_final_obs" in info and info["_final_obs"].any():
            done = info["_final_obs"]
            final_raw = info["final_obs"]
            if final_raw.dtype == object:  # Gymnasium's vector envs keep per-env objects
                final_raw = np.stack([final_raw[i] if done[i] else raw[i] for i in range(self.num_envs)])
            final = self._finite(self.prepare(final_raw), "final observation", "step")
        transition = Transition(self._finite(self.prepare(raw), "observation", "step"),
                                self._finite(np.asarray(reward).astype(np.float32, copy=False), "reward", "step"),
                                np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool), final)
        self.env_steps += self.num_envs
        return transition

    # --- faults: one line naming the env, the call and when, instead of a traceback or NaN training ---

    def _where(self, call: str) -> str:
        return f"in {call}() after {self.env_steps:,} {self.purpose} env steps"

    def _fault(self, call: str, exc: Exception) -> EvorlError:
        """The one-line error for an exception from the env's reset or step (our own pass through)."""
        if isinstance(exc, EvorlError):
            return exc
        text = " ".join(str(exc).split()) or "(no message)"
        text = text if len(text) <= 200 else text[:197] + "..."
        return EnvFault(f"env.id={self.env_id} raised {type(exc).__name__} {self._where(call)}: {text}")

    def _finite(self, values: np.ndarray, what: str, call: str) -> np.ndarray:
        """`values` if all finite (one vectorised check, cheap next to a step), else an EnvFault that
        names the first sub-env with a NaN or inf: training on it would make NaN of every member."""
        if np.isfinite(values).all():
            return values
        rows = values.reshape(len(values), -1)
        sub = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        bad = rows[sub][~np.isfinite(rows[sub])][0]
        article = "an" if what[0] in "aeiou" else "a"
        raise EnvFault(f"env.id={self.env_id} returned {article} {what} holding {bad} from sub-env {sub} "
                       f"{self._where(call)}: fix the env (or its env.kwargs) so that it stays finite")

    @property
    def saves_state(self) -> bool:
        """Whether the backend's state can be saved and restored (our batched NumPy envs); the
        state of Gymnasium's vector envs (Box2D, MuJoCo, Atari...) and of EnvPool cannot."""
        return hasattr(self.env, "save_state")

    def save_state(self) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(JSON-ready dict, arrays) that `load_state` continues from exactly; None if the backend
        cannot save its state (see `saves_state`)."""
        return self.env.save_state() if self.saves_state else None

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.env.load_state(meta, arrays)

    def render(self) -> np.ndarray:
        """The first sub-env's frame (render_mode="rgb_array")."""
        return self.env.call("render")[0]

    def close(self) -> None:
        self.env.close()
