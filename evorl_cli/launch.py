"""The Hydra side of sweeps: what a job does differently inside a multirun, and the summary at its end.

- `contained`: a multirun job that fails is recorded and reported in one line, and the sweep goes
  on (Hydra's sweepers would otherwise stop at the first failure and skip the summary).
- `threads_per_job`: jobs that a launcher runs side by side share the cores instead of each taking
  all of them.
- `SummarizeSweep`: the Hydra callback (registered in conf/train.yaml) that prints and writes the
  sweep's summary when the multirun ends, whichever launcher ran it, and makes the exit code say
  whether a job failed.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from evorl_cli import sweeps
from evorl_cli.errors import EvorlError
from evorl_cli.records import plot_on_finish

log = logging.getLogger(__name__)
EXIT_JOB_FAILED = 1  # a multirun in which at least one job failed


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def contained(run_dir: Path) -> Iterator[None]:
    """In a multirun job: an exception (a bad value only this job has, an env that breaks, a bug)
    becomes one line on stderr, with the traceback in the job's log file, and the sweep carries
    on. Outside a multirun the exception passes, so a single run fails as it always did."""
    if not in_multirun():
        yield
        return
    try:
        yield
    except Exception as exc:
        if isinstance(exc, EvorlError):  # the user's to fix: its line says all
            log.error("job failed: %s", exc)
        else:  # a bug or a library's failure: keep the traceback in the job's log file
            log.exception("job failed")
        Console(stderr=True).print(f"[bold red]job failed:[/] {escape(str(run_dir))}: {escape(sweeps.one_line(exc))}",
                                   highlight=False, soft_wrap=True)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(launcher: Any, cores: int | None = None) -> int | None:
    """Torch threads for one job of a sweep that `launcher` (the `hydra.launcher` node) runs, when
    `torch_threads` is not set: jobs running side by side split the cores instead of each taking
    all of them. None (torch's default) when jobs run one at a time or the launcher is unknown.

    joblib: cores // n_jobs (n_jobs <= 0 counts back from the cores, as joblib does); submitit
    (local or SLURM): cpus_per_task, else 1 (its jobs all start at once, one CPU each by default);
    Ray: the task's `ray.remote.num_cpus`, else 1 (Ray's default reservation per task)."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    cores = cores or _usable_cores()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        at_once = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // at_once)
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    if "ray_launcher" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        return max(1, int(math.floor(float(remote.get("num_cpus") or 1))))
    return None


def sweep_threads() -> int | None:
    """`threads_per_job` for this job if it runs in a multirun (logged in the job's log), else None."""
    if not in_multirun():
        return None
    threads = threads_per_job(HydraConfig.get().launcher)
    if threads is not None:
        log.info("torch threads: %d (jobs of this sweep run side by side; set torch_threads to change it)", threads)
    return threads


class SummarizeSweep(Callback):
    """When a multirun ends: the jobs and seed-aggregate tables on the terminal, summary.csv,
    summary_seeds.csv and summary.md in the sweep directory, sweep.png there with `plot.on_finish`;
    exit code 1 if a job failed. Listed
    first in hydra.callbacks, so that (Hydra ends callbacks in reverse order) it runs last."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = sweeps.summarize(sweep_dir)
        if not summary.jobs:
            return
        console = Console()
        print_summary(summary, console)
        if config.get("plot", {}).get("on_finish", False):
            plot_on_finish(sweep_dir, console)  # only warns if it fails
        if summary.failed:
            raise SystemExit(EXIT_JOB_FAILED)


def print_summary(summary: sweeps.Summary, console: Console) -> None:
    """Write the summary files; print both tables, where the files are, and each failed job's error."""
    files = sweeps.write_files(summary)
    for table in sweeps.tables(summary):
        console.print(table)
    console.print(f"summary: {', '.join(str(f) for f in files)}", highlight=False, soft_wrap=True)
    for line in sweeps.failures(summary):
        console.print(f"[red]{escape(line)}[/]", highlight=False, soft_wrap=True)
    if summary.failed:
        console.print(f"[bold red]{len(summary.failed)} of {len(summary.jobs)} jobs failed[/]", highlight=False)
