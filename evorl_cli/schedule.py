"""Learning-rate schedules: what fraction of each member's own `lr` an update uses.

A schedule scales the lr every member carries (mutations still move that base value), by a factor
computed from the run's training env steps, which the checkpoint records: a resumed run continues
the schedule exactly where it stopped.
"""

from __future__ import annotations

LR_SCHEDULES = ("constant", "linear")


def lr_factor(schedule: str, env_steps: int, max_steps: int) -> float:
    """The factor on each member's lr for an update that starts after `env_steps` of the
    `max_steps` training budget: 1 for `constant`; for `linear` (SB3's `lin_<lr>`), 1 at the start
    falling in a straight line to 0 where the budget ends."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - env_steps / max_steps)
    raise ValueError(f"unknown lr schedule {schedule!r}")
