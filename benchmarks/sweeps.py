"""Wall time of one sweep run by Hydra's basic launcher (one job at a time) and by the joblib
launcher (jobs side by side), on the same work: `evorl train -m env=cartpole algo.lr=A,B seed=0,1`.

    python benchmarks/sweeps.py --max-steps 32768 --n-jobs 2

Prints, per launcher (and for the basic launcher with torch_threads=1 too), the sweep's wall time (from the command's start to its exit: Python start,
the up-front check of every combination, the jobs, the summary) and each job's status and confirmed
best from the sweep's summary.csv. Needs the joblib extra (pip install "evorl-cli[joblib]").
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_sweep(out: Path, max_steps: int, lrs: str, seeds: str, launcher: list[str]) -> tuple[float, int, list[dict]]:
    cmd = [sys.executable, "-m", "evorl_cli.cli", "train", "-m", "env=cartpole", f"algo.lr={lrs}", f"seed={seeds}",
           f"max_steps={max_steps}", "progress=false", "device=cpu", f"hydra.sweep.dir={out}", *launcher]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if not (out / "summary.csv").is_file():
        sys.exit(f"the sweep wrote no summary (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    with open(out / "summary.csv", newline="") as fh:
        return wall, proc.returncode, list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=32768, help="training env steps per job")
    parser.add_argument("--lrs", default="0.001,0.0003", help="the learning rates swept")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib workers")
    args = parser.parse_args()
    # basic with torch's default threads (all cores) and with one thread, to tell the gain of running
    # jobs side by side from that of fewer threads per job.
    launchers = {"basic": [], "basic 1 thread": ["torch_threads=1"],
                 f"joblib n_jobs={args.n_jobs}": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"]}
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for name, extra in launchers.items():
            folder = Path(tmp) / f"sweep{len(walls)}"  # Hydra would read '=' in a path as an override
            wall, code, jobs = run_sweep(folder, args.max_steps, args.lrs, args.seeds, extra)
            walls[name] = wall
            print(f"{name:<16} {wall:7.1f} s  exit {code}  {len(jobs)} jobs")
            for job in jobs:
                best = f"{float(job['best']):.1f} ± {float(job['best_se']):.1f}" if job["best"] else "-"
                print(f"    {job['overrides']:<40} {job['status']:<9} confirmed best {best}  "
                      f"{job['seconds']} s in the job")
        basic, single, parallel = walls.values()
        print(f"joblib over basic: {basic / parallel:.2f}x; over basic with 1 thread: {single / parallel:.2f}x")


if __name__ == "__main__":
    main()
