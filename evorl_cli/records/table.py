"""The terminal: the generation table and the end-of-run summary panel.

Both must stay readable in an 80-column terminal and in a log file (where rich assumes 80
columns), so numbers are written compactly and never cut: columns are chosen by priority to fit
the console's width (a wide terminal shows more, e.g. the learner's diagnostics), and the one
free-text column, the mutation, wraps instead of being cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from evorl_cli.fitness import Confirmation
from evorl_cli.records.logger import LoggerContext
from evorl_cli.records.record import GenerationRecord

_SHORT_HP = {"lr": "lr", "batch_size": "batch", "update_epochs": "epochs", "gamma": "gamma",
             "gae_lambda": "lambda", "clip_coef": "clip", "ent_coef": "ent", "vf_coef": "vf",
             "max_grad_norm": "max_gn"}


def compact(x: float | int | None) -> str:
    """`x` in at most 7 characters: about 3 significant digits, k/M for large magnitudes,
    scientific notation for tiny ones, whole numbers as they are; '-' for missing or NaN."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "-"
    a = abs(x)
    if math.isinf(x) or a >= 1e9:
        return f"{x:.2e}" if not math.isinf(x) else ("inf" if x > 0 else "-inf")
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{x / 1e6:.{_decimals(a / 1e6)}f}M"
    if a >= 1e4:
        return f"{x / 1e3:.{_decimals(a / 1e3)}f}k"
    if x.is_integer():
        return str(int(x))
    if a >= 1:
        return f"{x:.{_decimals(a)}f}"
    if a >= 1e-3:
        return f"{x:.3g}"
    return f"{x:.1e}"


def _decimals(a: float) -> int:
    """Decimals that give 3 significant digits for 1 <= a < 1000 (none above)."""
    return 2 if a < 10 else 1 if a < 100 else 0


@dataclass
class _Column:
    header: str
    cells: list[str]
    priority: int  # lower shows first; columns are dropped from the highest down until the table fits
    justify: str = "right"
    wraps: bool = False

    @property
    def width(self) -> int:
        return max(len(self.header), *(len(c) for c in self.cells)) + 2  # one space of padding each side


def _best_text(best: Confirmation | None) -> str:
    if best is None:
        return "confirmed best -"
    return f"confirmed best {compact(best.score)}±{compact(best.std_error)} (gen {best.generation})"


def generation_table(rec: GenerationRecord, tuned: list[str], selection: str, width: int = 80) -> Table:
    """Member, selection fitness, confirmed score, training return, the tuned hyperparameters,
    architecture, parent, mutation (and, where the width allows, learner diagnostics); the title
    holds the run's counters and confirmed best. Fits in `width` columns without cutting a number."""
    confirmed = rec.confirmation
    rows = range(rec.size)
    mine = [confirmed is not None and confirmed.member == p for p in rows]
    diag = rec.learner
    columns = [
        _Column("member", [str(p) for p in rows], 0),
        _Column("fitness" if selection == "eval" else "fit (train)", [compact(rec.fitness[p]) for p in rows], 0),
        _Column("confirmed", [(f"{compact(confirmed.score)}±{compact(confirmed.std_error)}" if confirmed.passed
                               else f"screen {compact(confirmed.screen.score)}") if m else "" for m in mine], 1),
        _Column("train", [compact(rec.train_return[p]) for p in rows], 5),
        *[_Column(_SHORT_HP.get(n, n), [compact(rec.hp(n, p)) for p in rows], 3) for n in tuned],
        _Column("arch", rec.architecture, 4, justify="left"),
        _Column("par", ["-" if rec.parents[p] < 0 else str(rec.parents[p]) for p in rows], 2),
        *[_Column(header, [compact(diag[key][p]) for p in rows], 7) for key, header in
          (("entropy", "entropy"), ("approx_kl", "kl"), ("clip_fraction", "clipfrac"),
           ("explained_variance", "expl var"), ("value_loss", "v loss")) if key in diag],
    ]
    mutation = _Column("mutation", rec.mutations, 6, justify="left", wraps=True)
    shown, used = [], 0
    for col in sorted(columns, key=lambda c: c.priority):  # strictly by priority: the first that does not fit ends it
        if used + col.width > width - 16:  # leave the mutation column room for a short note
            break
        shown.append(col)
        used += col.width
    shown.sort(key=lambda c: columns.index(c))
    shown.append(mutation)

    table = Table(title=f"gen {rec.generation} · {compact(rec.env_steps)} train + {compact(rec.evaluation_steps)} "
                        f"eval steps · {rec.wall_time:.0f} s · {_best_text(rec.best)}",
                  title_justify="left", show_edge=False, pad_edge=False, box=None, width=None)
    for col in shown:
        table.add_column(col.header, justify=col.justify, no_wrap=not col.wraps,
                         overflow="fold" if col.wraps else "ignore", min_width=len(col.header) if col.wraps else None)
    for p in rows:
        table.add_row(*[c.cells[p] for c in shown], style="bold green" if mine[p] else None)
    return table


class TableLogger:
    """Prints each generation's table on the run's console (the progress bar stays below it)."""

    def __init__(self, ctx: LoggerContext) -> None:
        self.console = ctx.console
        self.tuned = sorted(ctx.config.hp_config)
        self.selection = ctx.config.evolution.selection

    def write(self, record: GenerationRecord) -> None:
        self.console.print(generation_table(record, self.tuned, self.selection, self.console.width))

    def close(self) -> None:
        pass


def summary_panel(outcome: str, best: Confirmation | None, best_steps: tuple[int, int] | None,
                  env_steps: int, evaluation_steps: int, wall_time: float, run_dir: Path,
                  best_checkpoint: Path | None, deterministic: bool) -> Panel:
    """The end of a run: the confirmed best ± standard error, where it was reached, the run's cost,
    and the commands that evaluate, render and plot it."""
    lines = [Text.assemble((outcome, "bold"))]
    if best is None:
        lines.append(Text("nothing confirmed: no member's screen beat the threshold"))
    else:
        actions = "deterministic" if deterministic else "sampled"
        lines.append(Text.assemble("confirmed best ", (f"{best.score:.2f} ± {best.std_error:.2f}", "bold green"),
                                   f" (standard error, {best.episodes} fresh episodes, {actions} actions)"))
        where = f"reached at generation {best.generation} (member {best.member})"
        if best_steps is not None:
            where += f", after {best_steps[0]:,} training + {best_steps[1]:,} evaluation env steps"
        lines.append(Text(where))
    lines.append(Text(f"run: {env_steps:,} training + {evaluation_steps:,} evaluation env steps, "
                      f"wall time {wall_time:.1f} s"))
    if best_checkpoint is not None:
        lines.append(Text(f"best checkpoint: {best_checkpoint}"))
    lines.append(Text("next:", style="bold"))
    if best is not None:
        lines += [Text(f"  evorl eval ckpt={run_dir}"), Text(f"  evorl render ckpt={run_dir}")]
    lines.append(Text(f"  evorl plot run={run_dir}"))
    return Panel(Group(*lines), title="run summary", title_align="left", expand=False)
