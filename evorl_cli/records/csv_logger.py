"""metrics.csv: one row per member per generation, always written. Plots and `read_run` read it."""

from __future__ import annotations

import csv
from pathlib import Path

from evorl_cli.fitness import Confirmation
from evorl_cli.hparams import MUTABLE_HPS
from evorl_cli.ppo import DIAGNOSTICS
from evorl_cli.records.logger import LoggerContext
from evorl_cli.records.record import GenerationRecord

FILENAME = "metrics.csv"


def _confirmation_cells(c: Confirmation | None) -> tuple[str, str, str]:
    """screen_score, confirmed_score, confirmed_se of a member's row (blank where nothing was measured)."""
    if c is None:
        return "", "", ""
    if not c.passed:
        return f"{c.screen.score:.4f}", "", ""
    return f"{c.screen.score:.4f}", f"{c.score:.4f}", f"{c.std_error:.4f}"


def _cell(x: float) -> str:
    return f"{x:.6g}"


class CsvLogger:
    """Appends one row per member per generation to `metrics.csv` (kept across resumes).

    Step counts are cumulative: `env_steps` counts training, `eval_steps` selection episodes and
    `confirm_steps` confirmation episodes. `fitness` is the selection fitness. On the row of the
    member screened that generation, `screen_score` holds its screen and, if it passed and became
    the best, `confirmed_score`/`confirmed_se` its reported score (re-measured; for the run's
    first confirmation, its screen); `best_score`/`best_se` hold
    the score of the member held as best on every row. Then each mutable hyperparameter, the
    architecture size (`hidden_units`), the generation's training throughput and the learner's
    diagnostics (ppo.DIAGNOSTICS: means over the member's optimiser steps, steps summed)."""

    FIELDS = ["generation", "member", "parent", "mutation", "env_steps", "eval_steps", "confirm_steps",
              "wall_time", "eval_time", "fitness", "screen_score", "confirmed_score", "confirmed_se", "best_score", "best_se",
              "train_return", "hidden_sizes", "activation", "rnn_hidden", *MUTABLE_HPS,
              "hidden_units", "train_steps_per_s", *DIAGNOSTICS]

    def __init__(self, ctx: LoggerContext) -> None:
        """Start (or, resuming at generation g > 0, continue) the file. Rows of generations at or
        after g were written by a run interrupted before its checkpoint: they are dropped, as the
        resumed run writes them again."""
        self.path = Path(ctx.run_dir) / FILENAME
        rows = []
        if self.path.exists() and ctx.start_generation > 0:
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.reader(fh)][1:]
            rows = [r for r in rows if r and int(r[0]) < ctx.start_generation]
        with open(self.path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.FIELDS)
            writer.writerows(rows)

    def write(self, rec: GenerationRecord) -> None:
        best = ("", "") if rec.best is None else (f"{rec.best.score:.4f}", f"{rec.best.std_error:.4f}")
        units = rec.hidden_units
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            for p in range(rec.size):
                confirmed = _confirmation_cells(rec.confirmation if rec.confirmation is not None
                                                and rec.confirmation.member == p else None)
                writer.writerow([rec.generation, p, rec.parents[p], rec.mutations[p], rec.env_steps, rec.eval_steps,
                                 rec.confirm_steps, f"{rec.wall_time:.3f}", f"{rec.eval_time:.3f}",
                                 f"{rec.fitness[p]:.4f}", *confirmed, *best, f"{rec.train_return[p]:.4f}",
                                 "x".join(map(str, rec.hidden_sizes[p])), rec.activation[p], int(rec.rnn_hidden[p]),
                                 *[rec.hp(n, p) for n in MUTABLE_HPS], int(units[p]), f"{rec.train_steps_per_s:.1f}",
                                 *[_cell(rec.learner[n][p]) if n in rec.learner else "" for n in DIAGNOSTICS]])

    def close(self) -> None:
        pass
