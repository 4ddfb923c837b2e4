"""What a run shows and records each generation: the rich table and metrics.csv."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from evorl_cli.config import MUTABLE_HPS
from evorl_cli.fitness import Confirmation
from evorl_cli.population import Population


@dataclass
class GenerationRecord:
    """One generation's outcome for every member (index = member slot during that generation)."""

    generation: int
    env_steps: int  # training env steps so far, summed over members
    eval_steps: int  # selection env steps so far
    confirm_steps: int  # confirmation env steps so far
    wall_time: float
    eval_time: float  # seconds of wall_time spent evaluating (selection and confirmation) so far
    fitness: np.ndarray  # selection fitness
    train_return: np.ndarray
    parents: list[int]  # slot each member was copied from at the previous selection (-1: initial)
    mutations: list[str]  # what that mutation did
    confirmation: Confirmation | None  # this generation's confirmation, if one was made
    best: Confirmation | None  # the member held as best, with its reported (re-measured) score


def _num(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _best_line(rec: GenerationRecord) -> str:
    if rec.best is None:
        return "confirmed best: -"
    return (f"confirmed best {rec.best.score:.1f} ± {rec.best.std_error:.1f} "
            f"(gen {rec.best.generation}, {rec.best.episodes} episodes)")


def generation_table(rec: GenerationRecord, pop: Population, tuned: list[str], selection: str) -> Table:
    """Member, selection fitness, confirmed score, training return, tuned hyperparameters,
    architecture, parent, mutation; the title holds the run's counters and confirmed best."""
    confirmed = rec.confirmation
    evaluated = rec.eval_steps + rec.confirm_steps
    table = Table(title=f"generation {rec.generation}  ·  {rec.env_steps:,} training + {evaluated:,} evaluation "
                        f"env steps  ·  {rec.wall_time:.1f} s  ·  {_best_line(rec)}",
                  title_justify="left", show_edge=False, pad_edge=False)
    for col in ("member", f"fitness ({selection})", "confirmed", "train return"):
        table.add_column(col, justify="right")
    for name in tuned:
        table.add_column(name, justify="right")
    for col in ("architecture", "parent", "mutation"):
        table.add_column(col)
    for p in range(pop.size):
        hp = pop.hyperparameters(p)
        mine = confirmed is not None and confirmed.member == p
        table.add_row(str(p), _num(rec.fitness[p]), confirmed.describe() if mine else "",
                      _num(rec.train_return[p]), *[f"{hp[n]:.3g}" for n in tuned], pop.arch.describe(p),
                      "-" if rec.parents[p] < 0 else str(rec.parents[p]), rec.mutations[p],
                      style="bold green" if mine else None)
    return table


def _confirmation_cells(c: Confirmation | None) -> tuple[str, str, str]:
    """screen_score, confirmed_score, confirmed_se of a member's row (blank where nothing was measured)."""
    if c is None:
        return "", "", ""
    if not c.passed:
        return f"{c.screen.score:.4f}", "", ""
    return f"{c.screen.score:.4f}", f"{c.score:.4f}", f"{c.std_error:.4f}"


class MetricsWriter:
    """Appends one row per member per generation to `metrics.csv` (kept across resumes).

    Step counts are cumulative: `env_steps` counts training, `eval_steps` selection episodes and
    `confirm_steps` confirmation episodes. `fitness` is the selection fitness. On the row of the
    member screened that generation, `screen_score` holds its screen and, if it passed and became
    the best, `confirmed_score`/`confirmed_se` its re-measured score; `best_score`/`best_se` hold
    the score of the member held as best on every row."""

    FIELDS = ["generation", "member", "parent", "mutation", "env_steps", "eval_steps", "confirm_steps",
              "wall_time", "eval_time", "fitness", "screen_score", "confirmed_score", "confirmed_se", "best_score", "best_se",
              "train_return", "hidden_sizes", "activation", "rnn_hidden", *MUTABLE_HPS]

    def __init__(self, path: Path, generation: int = 0) -> None:
        """Start (or, resuming at `generation`, continue) the file. Rows of generations at or after
        `generation` were written by a run interrupted before its checkpoint: they are dropped, as
        the resumed run writes them again."""
        self.path = path
        rows = []
        if path.exists() and generation > 0:
            with open(path, newline="") as fh:
                rows = [r for r in csv.reader(fh)][1:]
            rows = [r for r in rows if r and int(r[0]) < generation]
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.FIELDS)
            writer.writerows(rows)

    def write(self, rec: GenerationRecord, pop: Population) -> None:
        best = ("", "") if rec.best is None else (f"{rec.best.score:.4f}", f"{rec.best.std_error:.4f}")
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            for p in range(pop.size):
                hp = pop.hyperparameters(p)
                confirmed = _confirmation_cells(rec.confirmation if rec.confirmation is not None
                                                and rec.confirmation.member == p else None)
                writer.writerow([rec.generation, p, rec.parents[p], rec.mutations[p], rec.env_steps, rec.eval_steps,
                                 rec.confirm_steps, f"{rec.wall_time:.3f}", f"{rec.eval_time:.3f}",
                                 f"{rec.fitness[p]:.4f}", *confirmed, *best, f"{rec.train_return[p]:.4f}",
                                 "x".join(map(str, pop.arch.hidden_sizes(p))), pop.arch.activation_name(p),
                                 int(pop.arch.hidden[p]),
                                 *[hp[n] for n in MUTABLE_HPS]])
