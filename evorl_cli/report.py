"""What a run shows and records each generation: the rich table and metrics.csv."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from evorl_cli.config import MUTABLE_HPS
from evorl_cli.population import Population


@dataclass
class GenerationRecord:
    """One generation's outcome for every member (index = member slot during that generation)."""

    generation: int
    env_steps: int
    wall_time: float
    fitness: np.ndarray
    train_return: np.ndarray
    parents: list[int]  # slot each member was copied from at the previous selection (-1: initial)
    mutations: list[str]  # what that mutation did


def _num(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def generation_table(rec: GenerationRecord, pop: Population, tuned: list[str]) -> Table:
    """Member, fitness, training return, steps, tuned hyperparameters, architecture, parent, mutation."""
    best = int(np.nanargmax(np.where(np.isnan(rec.fitness), -np.inf, rec.fitness)))
    table = Table(title=f"generation {rec.generation}  ·  {rec.env_steps:,} env steps  ·  {rec.wall_time:.1f} s",
                  title_justify="left", show_edge=False, pad_edge=False)
    for col in ("member", "fitness", "train return", "steps"):
        table.add_column(col, justify="right")
    for name in tuned:
        table.add_column(name, justify="right")
    for col in ("architecture", "parent", "mutation"):
        table.add_column(col)
    for p in range(pop.size):
        hp = pop.hyperparameters(p)
        style = "bold green" if p == best else None
        table.add_row(str(p), _num(rec.fitness[p]), _num(rec.train_return[p]), f"{rec.env_steps // pop.size:,}",
                      *[f"{hp[n]:.3g}" for n in tuned], pop.arch.describe(p),
                      "-" if rec.parents[p] < 0 else str(rec.parents[p]), rec.mutations[p], style=style)
    return table


class MetricsWriter:
    """Appends one row per member per generation to `metrics.csv` (kept across resumes)."""

    FIELDS = ["generation", "member", "parent", "mutation", "env_steps", "wall_time", "fitness",
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
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            for p in range(pop.size):
                hp = pop.hyperparameters(p)
                writer.writerow([rec.generation, p, rec.parents[p], rec.mutations[p], rec.env_steps,
                                 f"{rec.wall_time:.3f}", f"{rec.fitness[p]:.4f}", f"{rec.train_return[p]:.4f}",
                                 "x".join(map(str, pop.arch.hidden_sizes(p))), pop.arch.activation_name(p),
                                 int(pop.arch.hidden[p]),
                                 *[hp[n] for n in MUTABLE_HPS]])
