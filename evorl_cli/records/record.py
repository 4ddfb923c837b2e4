"""The per-generation record: one complete snapshot that every logger takes.

It holds everything a generation produced, per member (index = member slot during that
generation): selection fitness, training return, the confirmation made, the learner's diagnostics,
the hyperparameters the member trained with, its architecture, and the parent and mutation it came
from. Loggers read nothing else, so a new backend sees exactly what the others see.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from evorl_cli.fitness import Confirmation
from evorl_cli.hparams import HPARAMS, MUTABLE_HPS
from evorl_cli.population import Population


def over_known(reduce: Callable[..., np.ndarray], values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """`reduce` (np.nanmax, np.nanmean) over the values that are known, NaN where none is (a
    generation whose members have no fitness yet), without numpy's all-NaN warning on the terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values, axis=axis)


@dataclass
class GenerationRecord:
    """One generation's outcome for every member, taken before selection changes the population."""

    generation: int
    env_steps: int  # training env steps so far, summed over members
    eval_steps: int  # selection env steps so far
    confirm_steps: int  # confirmation env steps so far
    wall_time: float
    eval_time: float  # seconds of wall_time spent evaluating (selection and confirmation) so far
    fitness: np.ndarray  # [P] selection fitness
    train_return: np.ndarray  # [P] mean return of the training episodes that ended this generation
    parents: list[int]  # slot each member was copied from at the previous selection (-1: initial)
    mutations: list[str]  # what that mutation did
    confirmation: Confirmation | None  # this generation's confirmation, if one was made
    best: Confirmation | None  # the member held as best, with its reported score
    hyperparameters: dict[str, np.ndarray] = field(default_factory=dict)  # every mutable HP, [P] each
    architecture: list[str] = field(default_factory=list)  # e.g. "64x64 tanh", per member
    hidden_sizes: list[list[int]] = field(default_factory=list)
    activation: list[str] = field(default_factory=list)
    rnn_hidden: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    learner: dict[str, np.ndarray] = field(default_factory=dict)  # ppo.DIAGNOSTICS, [P] each
    train_steps_per_s: float = float("nan")  # training env steps per second of this generation's PPO phase

    @property
    def size(self) -> int:
        return len(self.fitness)

    @property
    def hidden_units(self) -> np.ndarray:
        """Architecture size per member: hidden units of the MLP plus the recurrent state."""
        return np.array([sum(w) for w in self.hidden_sizes], dtype=np.int64) + self.rnn_hidden

    def hp(self, name: str, p: int) -> float | int:
        """Member p's value of hyperparameter `name`, as its type (int or float)."""
        return HPARAMS[name].kind(self.hyperparameters[name][p])

    @property
    def evaluation_steps(self) -> int:
        """Env steps played evaluating (selection and confirmation) so far."""
        return self.eval_steps + self.confirm_steps

    @classmethod
    def capture(cls, state, pop: Population, fitness: np.ndarray, train_return: np.ndarray,
                confirmation: Confirmation | None, wall_time: float, learner: dict[str, np.ndarray],
                train_steps_per_s: float) -> "GenerationRecord":
        """The record of the generation `state` (train.RunState) is in, with the population as it
        trained: its hyperparameters and architecture are copied, so later mutation leaves it as is."""
        size = pop.size
        return cls(state.generation, state.env_steps, state.eval_steps, state.confirm_steps, wall_time,
                   state.eval_time, np.asarray(fitness, dtype=float).copy(), np.asarray(train_return, dtype=float).copy(),
                   list(state.parents), list(state.mutations), confirmation, state.best_confirmation,
                   {n: np.asarray(pop.hp[n]).copy() for n in MUTABLE_HPS},
                   [pop.arch.describe(p) for p in range(size)], [pop.arch.hidden_sizes(p) for p in range(size)],
                   [pop.arch.activation_name(p) for p in range(size)], pop.arch.hidden.astype(np.int64).copy(),
                   learner, train_steps_per_s)

    def scalars(self, tuned: list[str]) -> dict[str, float]:
        """The record as flat scalars, for the TensorBoard and W&B loggers: population figures under
        `population/`, and per member `<group>/<name>/member_<p>` (fitness, training return, every
        learner diagnostic, every tuned hyperparameter, architecture size)."""
        out = {"population/generation": float(self.generation),
               "population/fitness_max": float(over_known(np.nanmax, self.fitness)),
               "population/fitness_mean": float(over_known(np.nanmean, self.fitness)),
               "population/train_return_mean": float(over_known(np.nanmean, self.train_return)),
               "population/train_steps_per_s": float(self.train_steps_per_s),
               "population/evaluation_steps": float(self.evaluation_steps),
               "population/wall_time": float(self.wall_time)}
        if self.best is not None:
            out["population/confirmed_best"] = float(self.best.score)
            out["population/confirmed_best_se"] = float(self.best.std_error)
        per_member = {"fitness": self.fitness, "train_return": self.train_return,
                      "arch/hidden_units": self.hidden_units,
                      **{f"learner/{k}": v for k, v in self.learner.items()},
                      **{f"hp/{n}": self.hyperparameters[n] for n in tuned}}
        for name, values in per_member.items():
            for p, v in enumerate(values):
                out[f"{name}/member_{p}"] = float(v)
        return out
