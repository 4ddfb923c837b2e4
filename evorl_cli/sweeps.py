"""What a sweep (or any directory of runs) came to: one row per job, one per setting over its seeds.

Everything here reads files the runs wrote, so it works on finished, running and interrupted
sweeps alike, and on a plain directory holding several runs:
- `status.json` (written by the job itself through `job_status`): running, finished, reached,
  failed (with its one-line error) or interrupted;
- `.hydra/overrides.yaml`: the job's overrides;
- `metrics.csv`: the confirmed best (`best_score`/`best_se`) and the step and time counters of
  every generation, from which the steps and seconds to the target are read;
- `checkpoints/best.safetensors`: the confirmed best member.

`summary.csv` (per job), `summary_seeds.csv` (per setting) and `summary.md` (both, as markdown
tables to paste) are written into the summarised directory. No Hydra here: the Hydra callback
that calls this at the end of a multirun lives in launch.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml
from rich.table import Table

from evorl_cli.records.csv_logger import FILENAME as METRICS_FILE
from evorl_cli.records.read import read_rows

STATUS_FILE = "status.json"
BEST_CHECKPOINT = Path("checkpoints") / "best.safetensors"
# Overrides that do not make a different setting: a group over seeds ignores them.
NOT_A_SETTING = ("seed", "progress", "torch_threads", "resume", "trust_checkpoint")
SUMMARY_FILES = ("summary.csv", "summary_seeds.csv", "summary.md")


# --- the job's status file -------------------------------------------------------------------------

def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class StatusFile:
    """`status.json` in a run directory: what the job is doing or how it ended, written atomically
    (temp file and rename) so a reader never sees half a file."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.fields: dict = {}

    def write(self, state: str, **fields) -> None:
        self.fields.update(fields, state=state, updated=time.time())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.fields, indent=1) + "\n")
        os.replace(tmp, self.path)

    def ended(self, reached_target: bool, best_score: float, generations: int) -> None:
        """The run ended normally: it reached its target or spent its step budget."""
        self.write("reached" if reached_target else "finished", error=None, generations=generations,
                   best_score=None if not math.isfinite(best_score) else best_score, ended=time.time())


@contextmanager
def job_status(run_dir: Path) -> Iterator[StatusFile]:
    """Record a job in `run_dir/status.json`: running from here on (with this process's id and host,
    so a reader can tell a live job from one that was killed), then failed with its one-line error,
    or interrupted; the caller records a normal end with `StatusFile.ended`."""
    status = StatusFile(run_dir)
    status.write("running", error=None, pid=os.getpid(), host=socket.gethostname(), started=time.time())
    try:
        yield status
    except KeyboardInterrupt:
        status.write("interrupted", ended=time.time())
        raise
    except Exception as exc:
        status.write("failed", error=one_line(exc), ended=time.time())
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_status(run_dir: Path) -> tuple[str, str]:
    """(state, error line) of a run. A job recorded as running whose process is gone on this host
    was killed: interrupted. A run without a status file (older than status files) is 'unknown'."""
    try:
        fields = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return "unknown", ""
    state = fields.get("state", "unknown")
    if state == "running" and fields.get("host") == socket.gethostname() and not _alive(int(fields.get("pid", 0))):
        state = "interrupted"
    return state, fields.get("error") or ""


# --- one job ---------------------------------------------------------------------------------------

@dataclass
class Progress:
    """Where a run stood at one generation: training and evaluation env steps, wall seconds."""

    train_steps: int
    eval_steps: int
    seconds: float


@dataclass
class Job:
    """One run as its files describe it."""

    name: str  # path relative to the summarised directory
    path: Path
    overrides: list[str]
    status: str  # finished | reached | failed | interrupted | running | unknown
    error: str
    target: float | None
    best: float | None = None  # confirmed best score and its standard error
    best_se: float | None = None
    generations: int = 0
    total: Progress | None = None  # the counters at the last recorded generation
    to_target: Progress | None = None  # the counters when the confirmed best first reached the target
    best_checkpoint: Path | None = None

    @property
    def reached(self) -> bool:
        return self.to_target is not None


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _progress(row: dict) -> Progress:
    return Progress(int(row["env_steps"]), int(row["eval_steps"]) + int(row["confirm_steps"]),
                    float(row["wall_time"]))


def _target(run_dir: Path) -> float | None:
    """The run's target: as its status file recorded it, else env.target of its saved config."""
    try:
        recorded = json.loads((run_dir / STATUS_FILE).read_text())
        if "target" in recorded:
            return _number(recorded["target"])
    except (OSError, ValueError):
        pass
    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        return _number((config.get("env") or {}).get("target"))
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def read_job(run_dir: Path, root: Path) -> Job:
    """A run's overrides, status, confirmed best, counters and steps to its target."""
    try:
        overrides = [str(o) for o in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, yaml.YAMLError):
        overrides = []
    status, error = read_status(run_dir)
    job = Job(str(run_dir.relative_to(root)) if run_dir != root else run_dir.name, run_dir, overrides, status,
              error, _target(run_dir))
    best = run_dir / BEST_CHECKPOINT
    job.best_checkpoint = best if best.is_file() else None
    if not (run_dir / METRICS_FILE).is_file():
        return job
    rows = read_rows(run_dir)
    for row in rows:  # a running job may have left its last row half written: stop there
        try:
            progress = _progress(row)
            generation = int(row["generation"])
        except (TypeError, ValueError, KeyError):
            break
        job.generations, job.total = generation + 1, progress
        score = _number(row.get("best_score"))
        if score is not None:
            job.best, job.best_se = score, _number(row.get("best_se"))
            if job.to_target is None and job.target is not None and score >= job.target:
                job.to_target = progress
    return job


def _is_run(path: Path) -> bool:
    return any((path / name).exists() for name in (STATUS_FILE, METRICS_FILE, ".hydra/overrides.yaml"))


def find_runs(root: Path) -> list[Path]:
    """Run directories at or below `root` (a sweep directory, `outputs/`, a folder of runs), in
    job order: a sweep's numbered jobs by number, other runs by path. A run's own subfolders are
    not searched."""
    if _is_run(root):
        return [root]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += find_runs(child)

    def order(path: Path) -> tuple:
        head = path.relative_to(root).parts[0].split("_", 1)[0]
        return (0, int(head), str(path)) if head.isdigit() else (1, 0, str(path))
    return sorted(found, key=order)


# --- the summary -----------------------------------------------------------------------------------

def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _setting(job: Job) -> tuple[str, ...]:
    """The overrides that make a job's setting: all but its seed, Hydra's own and run-only keys."""
    return tuple(o for o in job.overrides
                 if _key(o) not in NOT_A_SETTING and not _key(o).startswith(("hydra.", "hydra/")))


def _median_iqr(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (75th minus 25th percentile, linear interpolation); NaN if empty."""
    if not values:
        return math.nan, math.nan
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(q75 - q25)


@dataclass
class SeedGroup:
    """Jobs that differ only in their seed: the seed aggregates reported for one setting."""

    setting: tuple[str, ...]
    jobs: list[Job]
    best_mean: float = math.nan  # over the jobs with a confirmed best
    best_std: float = math.nan  # sample standard deviation (n - 1); NaN under two scores
    steps_median: float = math.nan  # training env steps to the target, over the jobs that reached it
    steps_iqr: float = math.nan
    eval_steps_median: float = math.nan
    eval_steps_iqr: float = math.nan
    seconds_median: float = math.nan
    seconds_iqr: float = math.nan

    @property
    def seeds(self) -> int:
        return len(self.jobs)

    @property
    def reached(self) -> int:
        return sum(job.reached for job in self.jobs)

    @property
    def failed(self) -> int:
        return sum(job.status == "failed" for job in self.jobs)

    @classmethod
    def of(cls, setting: tuple[str, ...], jobs: list[Job]) -> "SeedGroup":
        group = cls(setting, jobs)
        scores = [job.best for job in jobs if job.best is not None]
        if scores:
            group.best_mean = float(np.mean(scores))
            group.best_std = float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan
        reached = [job.to_target for job in jobs if job.to_target is not None]
        group.steps_median, group.steps_iqr = _median_iqr([p.train_steps for p in reached])
        group.eval_steps_median, group.eval_steps_iqr = _median_iqr([p.eval_steps for p in reached])
        group.seconds_median, group.seconds_iqr = _median_iqr([p.seconds for p in reached])
        return group


@dataclass
class Summary:
    root: Path
    jobs: list[Job]
    groups: list[SeedGroup] = field(default_factory=list)
    common: list[str] = field(default_factory=list)  # overrides every job shares

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "failed"]

    def varying(self, overrides) -> str:
        """The overrides that set this job (or group) apart from the others."""
        return " ".join(o for o in overrides if o not in self.common) or "-"


def summarize(root: Path) -> Summary:
    """Read every run at or below `root` and group them by setting (everything but the seed)."""
    root = Path(root)
    jobs = [read_job(path, root) for path in find_runs(root)]
    settings: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        settings.setdefault(_setting(job), []).append(job)
    common = [o for o in jobs[0].overrides if all(o in job.overrides for job in jobs)] if len(jobs) > 1 else []
    return Summary(root, jobs, [SeedGroup.of(s, js) for s, js in settings.items()], common)


# --- tables and files ------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def _best_text(job: Job) -> str:
    if job.best is None:
        return "-"
    return f"{job.best:.1f} ± {_fmt(job.best_se)}"


def _to_target_text(job: Job) -> str:
    if job.to_target is None:
        return "no target" if job.target is None else "not reached"
    p = job.to_target
    return f"{p.train_steps:,} + {p.eval_steps:,} steps, {p.seconds:.1f} s"


def _status_text(job: Job) -> str:
    return f"{job.status}: {job.error}" if job.error else job.status


def _median_text(median: float, iqr: float, digits: int = 0) -> str:
    return "-" if math.isnan(median) else f"{median:,.{digits}f} [{iqr:,.{digits}f}]"


def _checkpoint_text(job: Job, root: Path) -> str:
    if job.best_checkpoint is None:
        return "-"
    return str(job.best_checkpoint.relative_to(root)) if job.best_checkpoint.is_relative_to(root) else str(job.best_checkpoint)


def job_rows(summary: Summary, errors: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-job table; `errors`: the status cell holds a failed job's error line."""
    header = ["job", "overrides", "status", "confirmed best ± se", "to target (train + eval steps, time)",
              "best checkpoint"]
    rows = [[str(i), summary.varying(job.overrides), _status_text(job) if errors else job.status, _best_text(job),
             _to_target_text(job),
             _checkpoint_text(job, summary.root)] for i, job in enumerate(summary.jobs)]
    return header, rows


def group_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the over-seeds table."""
    header = ["setting", "seeds", "confirmed best mean ± std", "reached", "train steps to target median [IQR]",
              "seconds to target median [IQR]"]
    rows = [[summary.varying(g.setting), str(g.seeds) + (f" ({g.failed} failed)" if g.failed else ""),
             "-" if math.isnan(g.best_mean) else f"{g.best_mean:.1f} ± {_fmt(g.best_std)}",
             f"{g.reached}/{g.seeds}", _median_text(g.steps_median, g.steps_iqr),
             _median_text(g.seconds_median, g.seconds_iqr, 1)] for g in summary.groups]
    return header, rows


def tables(summary: Summary) -> list[Table]:
    """The two rich tables: every job, then every setting over its seeds (a failed job's error line is
    left to `failures`, so the table stays readable in 80 columns)."""
    out = []
    common = " ".join(summary.common)
    for title, (header, rows) in ((f"{len(summary.jobs)} runs in {summary.root}" +
                                   (f" · all with {common}" if common else ""), job_rows(summary, errors=False)),
                                  ("over seeds (std: n - 1; IQR: 75th - 25th percentile, of the seeds that "
                                   "reached the target)", group_rows(summary))):
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for col in header:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row, style="red" if row[2].startswith("failed") else None)
        out.append(table)
    return out


def failures(summary: Summary) -> list[str]:
    """'job <n> (<its overrides>) failed: <error line>' for each failed job."""
    return [f"job {i} ({summary.varying(job.overrides)}) failed: {job.error or 'no error recorded'}"
            for i, job in enumerate(summary.jobs) if job.status == "failed"]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_files(summary: Summary) -> list[Path]:
    """summary.csv (per job), summary_seeds.csv (per setting) and summary.md, in the summarised directory."""
    root = summary.root
    with open(root / "summary.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["job", "path", "overrides", "status", "error", "best", "best_se", "target", "reached",
                         "train_steps_to_target", "eval_steps_to_target", "seconds_to_target", "generations",
                         "train_steps", "eval_steps", "seconds", "best_checkpoint"])
        for i, job in enumerate(summary.jobs):
            t, total = job.to_target, job.total
            writer.writerow([i, job.name, " ".join(job.overrides), job.status, job.error,
                             "" if job.best is None else job.best, "" if job.best_se is None else job.best_se,
                             "" if job.target is None else job.target, job.reached,
                             *(("", "", "") if t is None else (t.train_steps, t.eval_steps, f"{t.seconds:.3f}")),
                             job.generations,
                             *(("", "", "") if total is None else (total.train_steps, total.eval_steps,
                                                                   f"{total.seconds:.3f}")),
                             "" if job.best_checkpoint is None else str(job.best_checkpoint)])
    with open(root / "summary_seeds.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["setting", "seeds", "failed", "scored", "best_mean", "best_std", "reached",
                         "train_steps_median", "train_steps_iqr", "eval_steps_median", "eval_steps_iqr",
                         "seconds_median", "seconds_iqr"])
        for g in summary.groups:
            writer.writerow([" ".join(g.setting), g.seeds, g.failed, sum(j.best is not None for j in g.jobs),
                             *[("" if math.isnan(x) else x) for x in (g.best_mean, g.best_std)], g.reached,
                             *[("" if math.isnan(x) else x) for x in (g.steps_median, g.steps_iqr, g.eval_steps_median,
                                                                      g.eval_steps_iqr, g.seconds_median,
                                                                      g.seconds_iqr)]])
    common = f"\n\nEvery run: `{' '.join(summary.common)}`" if summary.common else ""
    text = (f"# Summary of {root}{common}\n\n## Runs\n\n{_markdown(*job_rows(summary))}\n\n"
            f"## Over seeds\n\nConfirmed best: mean ± standard deviation (n - 1) over seeds. Steps and seconds to "
            f"the target: median [interquartile range] over the seeds that reached it.\n\n"
            f"{_markdown(*group_rows(summary))}\n")
    (root / "summary.md").write_text(text)
    return [root / name for name in SUMMARY_FILES]
