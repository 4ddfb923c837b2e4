"""Checks the commands run before anything is created (mostly `evorl train`), on a config that already validated.

`config.validate` checks values against each other; these check them against the world: what the
env observes, whether the output directory can be made, whether an env preset's values still suit
a new `env.id`. The checks raise a one-line EvorlError that names the fix; the warning is a line
to print. Hydra stays in `cli.py`: these take plain paths, dicts and dataclasses.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evorl_cli.config import EnvConfig, NetConfig
from evorl_cli.errors import EvorlError


@dataclass
class EnvProbe:
    """What the networks will read from an env: the encoded observation size and, for images, [C, H, W]."""

    obs_dim: int
    image: tuple[int, int, int] | None


def probe_env(cfg: EnvConfig) -> EnvProbe:
    """Build one sub-env exactly as training will (same backend, kwargs, wrappers, encoder) and close it.

    Going through `EnvBatch` rather than reading the spec means a missing extra, bad kwargs or an
    unsupported space fail here, with the same message training would give, before a run directory
    exists.
    """
    from evorl_cli.envs.batch import EnvBatch

    env = EnvBatch(cfg, 1)
    try:
        return EnvProbe(env.obs_dim, env.image)
    finally:
        env.close()


def check_net_fits(net: NetConfig, env_id: str, probe: EnvProbe) -> None:
    """A CNN needs image observations, and image observations need a CNN (an MLP on raw pixels
    does not learn, and a CNN on a vector has nothing to convolve)."""
    recurrent = f"net={net.recurrent}" if net.recurrent else "net=lstm"
    if net.cnn is not None and probe.image is None:
        raise EvorlError(f"net={net.name} needs image observations; {env_id} observes a vector of {probe.obs_dim}: "
                         f"use net=mlp or {recurrent}")
    if net.cnn is None and probe.image is not None:
        c, h, w = probe.image
        raise EvorlError(f"{env_id} observes images ({c}x{h}x{w}) and net={net.name} has no convolutions "
                         "(net.cnn is null): use net=cnn or net=cnn_lstm")


def check_output_dir(key: str, path: str, fix: str | None = None) -> None:
    """`path` (the value of `key`) exists as a writable directory or can be made: probed by making
    and removing a temporary directory in its nearest existing ancestor, so nothing is left behind.

    Permission bits alone would not do: root passes every access() check, yet cannot make a
    directory under /proc or on a read-only mount.
    """
    fix = fix or f"set {key} to a writable location, e.g. {key}=outputs/run1"
    try:
        target = Path(os.path.abspath(os.path.expanduser(path)))
    except OSError as exc:  # the working directory itself is gone
        raise EvorlError(f"{key}={path}: cannot resolve it ({exc.strerror}): {fix}") from None
    existing = target
    while not os.path.exists(existing):  # the root always exists, so this ends
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == target else f"lies under the file {existing}"
        raise EvorlError(f"{key}={path} {what}, not a directory: {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".evorl-write-check-", dir=existing))
    except OSError as exc:
        raise EvorlError(f"{key}={path} cannot be created: making a directory in {existing} fails "
                         f"({exc.strerror or type(exc).__name__}): {fix}") from None


# Values an env preset sets for its own env, which mean something else (or nothing) for another id.
ENV_SPECIFIC = ("target", "mask_indices")


def inherited_preset_warning(env: EnvConfig, preset_name: str, preset: dict[str, Any],
                             overridden: set[str]) -> str | None:
    """One line when `env.id` was set on the command line to another env than preset `env=<preset_name>`
    is made for, yet env-specific values of the preset (its target above all: a run stops once
    it is reached) were not; None otherwise. `overridden`: the command line's keys."""
    if "env.id" not in overridden or env.id == preset.get("id"):
        return None
    kept = {key: getattr(env, key) for key in ENV_SPECIFIC
            if f"env.{key}" not in overridden and preset.get(key) not in (None, [])
            and getattr(env, key) == preset.get(key)}
    if not kept:
        return None
    what = " and ".join(f"env.{key}={value:g}" if isinstance(value, float) else f"env.{key}={value}"
                        for key, value in kept.items())
    line = f"env.id={env.id} keeps {what} from env={preset_name} (made for {preset.get('id')})"
    fixes = []
    if "target" in kept:
        fixes.append(f"set env.target=<score for {env.id}>, or env.target=null for its registered threshold "
                     f"({_registered_threshold(env.id)})")
    if "mask_indices" in kept:
        fixes.append("env.mask_indices=[] to see the whole observation")
    return f"{line}: {'; '.join(fixes)}"


def _registered_threshold(env_id: str) -> str:
    import gymnasium as gym

    try:
        threshold = gym.spec(env_id).reward_threshold
    except Exception:  # an id only its module registers ("module:Env-v0"), or an EnvPool id
        return "unknown here"
    return f"{threshold:g}" if threshold is not None else "it has none: the run would use all of max_steps"
