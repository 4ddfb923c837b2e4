"""The one table of tunable hyperparameters.

Every member carries its own value of each hyperparameter below: `algo.<name>` is the value it
starts with, and listing `<name>` in `hp_config` lets RL-hyperparameter mutations move it. Each row
says the type, the range of values that make sense, whether one member's rollout caps it, and what
it means. Validation (`config.py`), mutation (`evolve/mutate.py`), `evorl train --help` and the
records (population, checkpoints, metrics.csv) all read this table: adding a hyperparameter is one
row here plus its field in `PPOConfig`.

The mutation rule is the same for all of them: multiply by `grow_factor` or `shrink_factor`
(integers round away from the old value, so a step always moves), then clamp to the `hp_config`
bounds intersected with what the rollout allows.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evorl_cli.errors import EvorlError

if TYPE_CHECKING:
    from evorl_cli.config import HPRange, TrainConfig

# A multiplicative step cannot leave 0, yet every env preset starts ent_coef at 0 while the default
# hp_config lists it as mutable. Rather than warn about (or silently skip) a setting that can never
# act, a grow from 0 steps to this fraction of the hp_config maximum: a small value inside the
# bounds the user chose, which later grows and shrinks multiplicatively like any other. A shrink
# from 0 stays at 0 (already the lowest value), and a grow_factor of 1 or less still means "never
# grows" (env=pendulum_novel uses that to let ent_coef only decay).
ZERO_STEP = 0.01


@dataclass(frozen=True)
class RolloutCap:
    """What one member's rollout allows a minibatch: at least one training unit (a step; for
    recurrent nets one BPTT sequence), at most the whole rollout (`algo.rollout_steps * env.num_envs`)."""

    unit: int  # env steps per training unit
    size: int  # env steps in one member's rollout

    @classmethod
    def of(cls, config: "TrainConfig") -> "RolloutCap":
        from evorl_cli.config import sequence_length

        return cls(sequence_length(config), config.algo.rollout_steps * config.env.num_envs)

    @property
    def what(self) -> str:
        return "algo.rollout_steps*env.num_envs"


@dataclass(frozen=True)
class HyperParameter:
    """One row of the table: `kind` int or float; valid values lie in [low, high] (low excluded
    when `low_open`); `rollout_capped`: one member's rollout also bounds it (see RolloutCap)."""

    name: str
    kind: type
    meaning: str
    low: float
    high: float = math.inf
    low_open: bool = False
    rollout_capped: bool = False

    # --- the valid range --------------------------------------------------------------------------

    def in_range(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def range_text(self) -> str:
        """The valid range in words, e.g. 'positive', 'within [0, 1]', 'at least 1'."""
        if self.high < math.inf:
            return f"within [{self.low:g}, {self.high:g}]"
        if self.low_open:
            return "positive" if self.low == 0 else f"greater than {self.low:g}"
        return f"at least {self.low:g}"

    def range_note(self) -> str:
        """The valid range as `--help` shows it, the rollout cap included."""
        lo = ("(" if self.low_open else "[") + f"{self.low:g}"
        hi = f"{self.high:g}]" if self.high < math.inf else "inf)"
        if self.rollout_capped:
            hi = "rollout]"
        return f"{lo}, {hi}"

    def cap_limits(self, cap: RolloutCap) -> tuple[float, float]:
        """The rollout's own limits on this hyperparameter (none unless `rollout_capped`)."""
        if not self.rollout_capped:
            return -math.inf, math.inf
        return max(cap.unit, self.low), cap.size

    # --- validation -----------------------------------------------------------------------------

    def check_start(self, value: float, cap: RolloutCap) -> None:
        """`algo.<name>`, the value every member starts with: in range, and within the rollout cap."""
        if not self.in_range(value):
            raise EvorlError(f"algo.{self.name}={value}: {self.meaning} must be {self.range_text()}")
        lo, hi = self.cap_limits(cap)
        if not lo <= value <= hi:
            unit = (f"hold at least one BPTT sequence ({cap.unit} steps) and at most the rollout" if cap.unit > 1
                    else "be between 1 and the rollout size")
            raise EvorlError(f"algo.{self.name}={value}: must {unit} {cap.what}={cap.size}: "
                             f"lower algo.{self.name} or raise algo.rollout_steps or env.num_envs")

    def check_bounds(self, bounds: "HPRange", start: float, cap: RolloutCap) -> None:
        """`hp_config.<name>`: ordered, in range, step factors positive, reachable within the
        rollout cap, and holding the start value."""
        key = f"hp_config.{self.name}"
        if bounds.min > bounds.max:
            raise EvorlError(f"{key}: min={bounds.min} is greater than max={bounds.max}: swap them")
        if bounds.grow_factor <= 0 or bounds.shrink_factor <= 0:
            raise EvorlError(f"{key}: grow_factor={bounds.grow_factor} and shrink_factor={bounds.shrink_factor} "
                             "must be positive (e.g. 1.2 and 0.8)")
        for end in ("min", "max"):
            value = getattr(bounds, end)
            if not self.in_range(value):
                raise EvorlError(f"{key}.{end}={value}: {self.meaning} must be {self.range_text()}")
        lo, hi = self.mutation_limits(bounds, cap)
        if lo > hi:
            raise EvorlError(f"{key}=[{bounds.min:g}, {bounds.max:g}] leaves no value the rollout allows "
                             f"([{cap.unit}, {cap.what}={cap.size}]): lower {key}.min")
        if not lo <= start <= hi:
            raise EvorlError(f"algo.{self.name}={start} lies outside {key} [{bounds.min}, {bounds.max}]: "
                             "start it inside the bounds or widen them")

    # --- mutation ----------------------------------------------------------------------------------

    def mutation_limits(self, bounds: "HPRange", cap: RolloutCap) -> tuple[float, float]:
        """Where a mutation may take the value: the hp_config bounds within the rollout cap."""
        lo, hi = self.cap_limits(cap)
        return max(bounds.min, lo), min(bounds.max, hi)

    def mutate(self, value: float, grow: bool, bounds: "HPRange", cap: RolloutCap) -> float | int:
        """One multiplicative step (see the module docstring and ZERO_STEP), clamped and typed."""
        factor = bounds.grow_factor if grow else bounds.shrink_factor
        if value == 0 and grow and factor > 1:
            new = ZERO_STEP * bounds.max
        else:
            new = value * factor
        if self.kind is int:
            new = math.ceil(new) if grow else math.floor(new)
        lo, hi = self.mutation_limits(bounds, cap)
        return self.kind(min(max(new, lo), hi))

    def can_move(self, value: float, bounds: "HPRange", cap: RolloutCap) -> bool:
        """Whether a grow or a shrink would change `value` (a mutation that cannot is not drawn)."""
        return any(self.mutate(value, grow, bounds, cap) != value for grow in (True, False))


TABLE = (
    HyperParameter("lr", float, "the learning rate", 0.0, low_open=True),
    HyperParameter("batch_size", int, "the minibatch size (env steps)", 1, rollout_capped=True),
    HyperParameter("ent_coef", float, "the entropy bonus coefficient", 0.0),
    HyperParameter("vf_coef", float, "the value loss coefficient", 0.0),
    HyperParameter("clip_coef", float, "the PPO clip range", 0.0),
    HyperParameter("gamma", float, "the discount", 0.0, 1.0),
    HyperParameter("gae_lambda", float, "the GAE lambda", 0.0, 1.0),
    HyperParameter("max_grad_norm", float, "the gradient norm clip", 0.0),
    HyperParameter("update_epochs", int, "the number of epochs per rollout", 1),
)
HPARAMS: dict[str, HyperParameter] = {hp.name: hp for hp in TABLE}
MUTABLE_HPS = tuple(HPARAMS)
INTEGER_HPS = tuple(hp.name for hp in TABLE if hp.kind is int)


def lookup(name: str) -> HyperParameter:
    """The row of `hp_config.<name>`, or a one-line error that suggests the closest name."""
    if name in HPARAMS:
        return HPARAMS[name]
    close = difflib.get_close_matches(name, MUTABLE_HPS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; mutable: {', '.join(MUTABLE_HPS)}"
    raise EvorlError(f"hp_config.{name}: not a mutable hyperparameter{hint}")


def help_text() -> str:
    """The `evorl train --help` section on hyperparameters and mutation weights."""
    lines = ["== Tunable hyperparameters ==",
             "Each member carries its own. algo.<name> is the start value; listing <name> in hp_config",
             "(min, max, grow_factor, shrink_factor) lets RL mutations multiply it by grow_factor or",
             "shrink_factor (integers rounded away from the old value), clamped to [min, max]. A value at 0",
             f"grows to {ZERO_STEP:g} x max. rollout = algo.rollout_steps*env.num_envs (recurrent nets:",
             "batch_size holds at least one BPTT sequence).", ""]
    lines += [f"  {hp.name:<14} {hp.kind.__name__:<6} {hp.range_note():<14} {hp.meaning.removeprefix('the ')}"
              for hp in TABLE]
    lines += ["", "== Mutation weights ==",
              "mutation.no_mutation, parameters, architecture, activation and rl_hp are relative weights:",
              "each non-elite member draws one kind with probability weight / sum of the weights.", ""]
    return "\n".join(lines)
