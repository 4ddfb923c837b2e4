"""Checks `evorl train` runs before anything is created, on a config that already validated.

`config.validate` checks values against each other; these check them against the world: what the
env observes, whether the output directory can be made. Each raises a one-line EvorlError that
names the fix. Hydra stays in `cli.py`: these take plain paths and dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

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
