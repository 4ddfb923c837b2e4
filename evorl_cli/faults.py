"""Members whose training diverged: detected after each PPO update and replaced from the elite.

A member whose loss or gradients turn NaN or inf takes that into its parameters and Adam moments
at the next optimiser step, and from then on acts with NaN: its rollouts, evaluation and children
are garbage, and with continuous actions the env itself is fed NaN. One member's bad luck (a
learning rate mutated too high, say) should not end the run, so the member is replaced by a copy
of the healthy member with the best last selection fitness, through the same `Population.gather`
that selection uses (parameters, Adam state, normaliser statistics, hyperparameters, architecture
move together), and the event is logged. Only when no member is left healthy does the run stop.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from evorl_cli.errors import EvorlError
from evorl_cli.population import Population

log = logging.getLogger(__name__)


def nonfinite_members(pop: Population) -> np.ndarray:
    """bool [P]: members with a NaN or inf in their parameters, Adam moments or normaliser statistics."""
    per_member = [pop.params.detach(), pop.adam.exp_avg, pop.adam.exp_avg_sq, pop.obs_norm.mean, pop.obs_norm.var,
                  pop.reward_scale.var.view(-1, 1), pop.reward_scale.mean.view(-1, 1)]
    healthy = torch.stack([torch.isfinite(t).all(dim=1) for t in per_member]).all(dim=0)
    return ~healthy.cpu().numpy()


def repair_nonfinite(pop: Population, fitness_hint: Sequence[float]) -> list[tuple[int, int]]:
    """Replace every diverged member (see `nonfinite_members`) by a copy of the healthy member with
    the best `fitness_hint` (each member's last selection fitness; NaN: none yet, so the first
    healthy member). Returns (member, donor) per repair, logged as a warning each; raises a one-line
    EvorlError when every member diverged."""
    bad = nonfinite_members(pop)
    if not bad.any():
        return []
    healthy = np.flatnonzero(~bad)
    if len(healthy) == 0:
        raise EvorlError("every member's parameters became NaN or inf in the same PPO update: lower algo.lr "
                         "(and hp_config.lr.max) or algo.max_grad_norm, and check that the env's rewards are sane")
    hint = np.nan_to_num(np.asarray(fitness_hint, dtype=np.float64), nan=-np.inf)
    donor = int(healthy[np.argmax(hint[healthy])])
    index = np.arange(pop.size)
    index[bad] = donor
    pop.gather(index)
    repairs = [(int(p), donor) for p in np.flatnonzero(bad)]
    for member, _ in repairs:
        log.warning("member %d: parameters or optimiser state became NaN/inf in the PPO update; replaced by a copy "
                    "of member %d (best last selection fitness among the healthy members)", member, donor)
    return repairs
