"""`evorl plot`: PNGs of a run, drawn headless from its metrics.csv (optional extra `plot`).

One run directory gets fitness.png, hyperparameters.png, architecture.png, learner.png and
lineage.png; a multirun sweep directory gets sweep.png (the best confirmed score of each job).
Everything is read from what the csv logger wrote, so a running or interrupted run plots too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from evorl_cli import sweeps
from evorl_cli.errors import EvorlError
from evorl_cli.hparams import MUTABLE_HPS
from evorl_cli.ppo import DIAGNOSTICS
from evorl_cli.records.csv_logger import FILENAME
from evorl_cli.records.lineage import KINDS, Lineage
from evorl_cli.records.read import read_rows
from evorl_cli.records.record import over_known

DPI = 100
FIGSIZE = (10, 6)  # inches: every PNG is 1000 x 600 pixels
_COLOURS = {"init": "#bbbbbb", "elite": "#000000", "none": "#999999", "parameters": "#1f77b4",
            "architecture": "#d62728", "activation": "#9467bd", "rl_hp": "#2ca02c"}
_SPARE = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")  # kinds registered later
_new_kinds = [kind for kind in KINDS if kind not in _COLOURS]
KIND_COLOURS = {**_COLOURS, **{kind: _SPARE[i % len(_SPARE)] for i, kind in enumerate(_new_kinds)}}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise EvorlError('plots need matplotlib: pip install "evorl-cli[plot]"') from None
    matplotlib.use("Agg")  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt


class RunTable:
    """A run's records as [G, P] arrays (generation x member slot)."""

    REQUIRED = ("generation", "member", "parent", "mutation", "env_steps", "fitness")

    def __init__(self, rows: list[dict]) -> None:
        missing = [name for name in self.REQUIRED if rows and name not in rows[0]]
        if missing:
            raise EvorlError(f"{FILENAME} has no column {', '.join(missing)}: pass a run directory written by "
                             "`evorl train`")
        # A running run may have left its last row half written: plot the complete rows.
        rows = [r for r in rows if all(r.get(name) is not None for name in self.REQUIRED if name != "fitness")]
        if not rows:
            raise EvorlError(f"{FILENAME} holds no generation yet: plot again after the first one")
        self.rows = rows
        self.generations = np.array(sorted({r["generation"] for r in rows}))
        self.size = max(r["member"] for r in rows) + 1
        self._index = {g: i for i, g in enumerate(self.generations)}

    def column(self, name: str) -> np.ndarray:
        out = np.full((len(self.generations), self.size), np.nan)
        for r in self.rows:
            value = r.get(name)
            if isinstance(value, (int, float)):
                out[self._index[r["generation"]], r["member"]] = value
        return out

    def has(self, name: str) -> bool:
        return any(isinstance(r.get(name), (int, float)) for r in self.rows)


def _run_config(run_dir: Path) -> dict:
    """The run's config, from its latest checkpoint's metadata (the tensors are not read)."""
    from safetensors import safe_open

    from evorl_cli import checkpoint as ckpt

    try:
        with safe_open(str(ckpt.resolve(run_dir, "latest")), framework="pt", device="cpu") as fh:
            return json.loads((fh.metadata() or {})[ckpt.META_KEY]).get("config", {})
    except Exception:
        return {}


def _target(config: dict) -> float | None:
    env = config.get("env", {})
    if env.get("target") is not None:
        return float(env["target"])
    try:
        import gymnasium as gym

        return gym.spec(env["id"]).reward_threshold
    except Exception:
        return None


def _final_best(table: RunTable) -> tuple[int, int]:
    """(generation index, slot) of the member held as best at the end: the latest confirmation
    whose score is the final best score; without one, the fittest member of the last generation."""
    final = table.rows[-1].get("best_score")
    if final is not None:
        for r in reversed(table.rows):
            if r.get("confirmed_score") is not None and abs(r["confirmed_score"] - final) < 1e-3:
                return table._index[r["generation"]], r["member"]
    last = table.column("fitness")[-1]
    return len(table.generations) - 1, int(np.nanargmax(np.nan_to_num(last, nan=-np.inf)))


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_fitness(plt, table: RunTable, target: float | None, out: Path) -> Path:
    steps = table.column("env_steps")[:, 0]
    fitness = table.column("fitness")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for p in range(table.size):
        ax.plot(steps, fitness[:, p], lw=0.8, alpha=0.45, label="members" if p == 0 else None, color="#1f77b4")
    # A generation where no member has a fitness (selection=train before any episode ended): a gap
    ax.plot(steps, over_known(np.nanmax, fitness, axis=1), lw=1.8, color="#ff7f0e", label="best member (selection)")
    ax.plot(steps, over_known(np.nanmean, fitness, axis=1), lw=1.8, ls="--", color="#2ca02c", label="population mean")
    best, se = table.column("best_score")[:, 0], table.column("best_se")[:, 0]
    if np.isfinite(best).any():
        ax.errorbar(steps, best, yerr=se, fmt="o-", ms=3, lw=1.5, capsize=3, color="#d62728",
                    label="confirmed best ± SE")
    if target is not None and _on_scale(target, fitness, best):
        ax.axhline(target, color="k", ls=":", lw=1.2, label=f"target {target:g}")
    elif target is not None:  # a target switched off (env.target=1e9) would flatten every curve
        ax.plot([], [], color="k", ls=":", lw=1.2, label=f"target {target:g} (off the scale)")
    ax.set(xlabel="training env steps", ylabel="return", title="Fitness over training")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out / "fitness.png")


def _on_scale(target: float, *values: np.ndarray) -> bool:
    """Whether a line at `target` fits beside `values` without flattening them: within ten times
    their span (or magnitude) of them. A real target far above early returns is kept (Hopper's
    3,800 beside 1,000); a switched-off one (1e9, 1e18) is not."""
    data = np.concatenate([v[np.isfinite(v)] for v in values])
    if data.size == 0:
        return True
    lo, hi = float(data.min()), float(data.max())
    reach = 10 * max(hi - lo, abs(lo), abs(hi), 1.0)
    return lo - reach <= target <= hi + reach


def _grid(plt, n: int):
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=FIGSIZE, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _per_member(plt, table: RunTable, names: list[str], title: str, x: np.ndarray, xlabel: str, out: Path,
                log_names: tuple[str, ...] = ()) -> Path:
    fig, axes = _grid(plt, max(1, len(names)))
    for ax, name in zip(axes, names):
        values = table.column(name)
        if np.allclose(values, values[:, :1], equal_nan=True):  # a population figure (throughput): one line
            ax.plot(x, values[:, 0], lw=1.0, marker=".", ms=3, color="k", label="population")
        else:
            for p in range(table.size):
                ax.plot(x, values[:, p], lw=1.0, marker=".", ms=3, label=f"member {p}")
        if name in log_names and np.isfinite(values).any() and np.nanmin(values) > 0:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.tick_params(which="both", labelsize=7)  # log axes label minor ticks too
        ax.grid(alpha=0.3)
        if np.issubdtype(x.dtype, np.integer):  # generations and step counts: no ticks between whole numbers
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if not names:
        axes[0].text(0.5, 0.5, "nothing recorded", ha="center", va="center")
        axes[0].set_axis_off()  # no data: unit axes would read as values
    if axes[0].get_legend_handles_labels()[0]:  # an empty panel has nothing to name (matplotlib warns)
        axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(title)
    fig.supxlabel(xlabel, fontsize=9)
    # Fixed margins, not tight_layout: measuring every label's box took a third of the plotting time.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.88, wspace=0.25, hspace=0.5)
    return _save(fig, out)


def plot_lineage(plt, table: RunTable, out: Path) -> Path:
    """Member slots (y) across generations (x); an edge from parent to child coloured by the
    mutation the child got; elites ringed; the final best member's ancestry drawn thick."""
    lineage = Lineage.from_rows(table.rows)
    gens = lineage.generations
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i in range(1, len(gens)):
        for p in range(table.size):
            parent = lineage.parent[i, p]
            if parent >= 0:
                ax.plot([gens[i - 1], gens[i]], [parent, p], color=KIND_COLOURS[lineage.kind[i][p]], lw=1.0,
                        alpha=0.8, zorder=1)
    fit = lineage.fitness
    g, p = np.meshgrid(gens, np.arange(table.size), indexing="ij")
    points = ax.scatter(g.ravel(), p.ravel(), c=fit.ravel(), cmap="viridis", s=28, zorder=3, edgecolors="none")
    elite = np.array([[k == "elite" for k in row] for row in lineage.kind])
    ax.scatter(g[elite], p[elite], s=90, facecolors="none", edgecolors="k", lw=1.2, zorder=4, label="elite")
    best_index, best_member = _final_best(table)
    path = lineage.ancestry(best_index, best_member)
    xs, ys = [gens[i] for i, _ in path], [m for _, m in path]
    ax.plot(xs, ys, color="#ff7f0e", lw=3.5, alpha=0.7, zorder=2, label="ancestry of the best member")
    ax.scatter([xs[-1]], [ys[-1]], marker="*", s=260, color="#ff7f0e", edgecolors="k", zorder=5,
               label=f"best (gen {gens[best_index]}, member {best_member})")
    for kind in KINDS[1:]:
        ax.plot([], [], color=KIND_COLOURS[kind], lw=2, label=f"mutation: {kind}")
    fig.colorbar(points, ax=ax, label="selection fitness")
    ax.set(xlabel="generation", ylabel="member slot", title="Lineage")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_yticks(range(table.size))
    ax.invert_yaxis()
    fig.subplots_adjust(left=0.07, right=0.76, bottom=0.1, top=0.93)  # room on the right: colour bar, legend
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper right", bbox_to_anchor=(0.995, 0.93))
    return _save(fig, out / "lineage.png")


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the run's PNGs into its directory and return their paths."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    table = RunTable(read_rows(run_dir))
    config = _run_config(run_dir)
    tuned = sorted(config.get("hp_config") or {}) or [n for n in MUTABLE_HPS
                                                        if len(set(map(str, (r.get(n) for r in table.rows)))) > 1]
    steps = table.column("env_steps")[:, 0]
    diagnostics = [n for n in (*DIAGNOSTICS, "train_steps_per_s") if table.has(n)]
    return [
        plot_fitness(plt, table, _target(config), run_dir),
        _per_member(plt, table, tuned, "Tuned hyperparameters per member", table.generations, "generation",
                    run_dir / "hyperparameters.png", log_names=("lr", "ent_coef")),
        _per_member(plt, table, ["hidden_units"] if table.has("hidden_units") else [],
                    "Architecture size per member (hidden units)", table.generations, "generation",
                    run_dir / "architecture.png"),
        _per_member(plt, table, diagnostics, "Learner diagnostics per member (means over each generation's updates)",
                    steps, "training env steps", run_dir / "learner.png"),
        plot_lineage(plt, table, run_dir),
    ]


def plot_sweep(sweep_dir: str | Path) -> list[Path]:
    """sweep.png: the final confirmed best (± standard error) of every job of a multirun sweep (or of
    any directory of runs), read as `evorl summarize` reads them; a job labelled by the overrides that
    set it apart."""
    plt = _pyplot()
    summary = sweeps.summarize(Path(sweep_dir))
    jobs = [job for job in summary.jobs if job.generations > 0]
    if not jobs:
        raise EvorlError(f"run={sweep_dir}: no job has recorded a generation yet: plot again after the first one")
    names = [f"{job.name}: {summary.varying(job.overrides)}" + ("" if job.best is not None else " (nothing confirmed)")
             for job in jobs]
    best = [np.nan if job.best is None else job.best for job in jobs]
    se = [job.best_se or 0.0 for job in jobs]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(best), xerr=se, color="#1f77b4", capsize=3)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="confirmed best score (± SE)", title=f"Sweep {summary.root.name}: best confirmed score per job")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [_save(fig, summary.root / "sweep.png")]


def plot(path: str | Path) -> list[Path]:
    """`evorl plot`: a run directory's plots, or a sweep directory's (jobs in subdirectories)."""
    path = Path(path)
    if not path.is_dir():
        raise EvorlError(f"run={path}: no such directory; pass a run directory (outputs/<date>/<run>) "
                         "or a multirun sweep directory")
    if (path / FILENAME).is_file():
        return plot_run(path)
    if any(path.glob(f"*/{FILENAME}")):
        return plot_sweep(path)
    raise EvorlError(f"run={path}: no {FILENAME} in it or in its subdirectories; pass a run directory "
                     "written by `evorl train` or a multirun sweep directory")


def plot_on_finish(path: Path, console: Console) -> None:
    """The end of a run or of a multirun (`plot.on_finish`): write the run's or the sweep's plots;
    any failure is a warning, never the run's or the sweep's failure (its records and checkpoints
    are already safe)."""
    try:
        written = plot(path)
    except EvorlError as exc:
        console.print(f"[yellow]plots skipped: {escape(str(exc))}[/]", highlight=False)
        return
    except Exception as exc:  # a plotting bug must not lose a finished run
        console.print(f"[yellow]plots failed ({escape(type(exc).__name__)}: {escape(str(exc))}); "
                      f"try again with: evorl plot run={path}[/]", highlight=False)
        return
    console.print(f"plots: {', '.join(p.name for p in written)} in {path}", highlight=False)
