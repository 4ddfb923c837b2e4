"""Sweeps: the summary a multirun leaves, failures kept to their job, Hydra's launchers and sweepers,
and the seed aggregates against numbers worked out by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from evorl_cli import sweeps
from evorl_cli.records.csv_logger import CsvLogger
from test_cli import CLI, TINY, cli_env, evorl, metrics_rows, ok

TESTS = Path(__file__).parent


def summary_rows(sweep: Path, name: str = "summary.csv") -> list[dict]:
    with open(sweep / name, newline="") as fh:
        return list(csv.DictReader(fh))


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def first_at_target(run: Path, target: float) -> dict | None:
    """The oracle for 'to target': the first metrics row whose confirmed best reaches the target."""
    return next((r for r in metrics_rows(run) if r["best_score"] and float(r["best_score"]) >= target), None)


# --- a real sweep, summarised --------------------------------------------------------------------

def test_a_sweep_summarises_itself(tmp_path):
    sweep = tmp_path / "multi"
    target = 30
    proc = ok(evorl("train", "-m", "seed=0,1", *TINY, "max_steps=256", f"env.target={target}",
                    f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=240))
    rows = summary_rows(sweep)
    assert [r["overrides"].split()[0] for r in rows] == ["seed=0", "seed=1"]
    for i, row in enumerate(rows):
        run = sweep / str(i)
        metrics = metrics_rows(run)
        assert metrics and (run / "checkpoints" / "best.safetensors").is_file()
        last = metrics[-1]
        assert float(row["best"]) == float(last["best_score"]) and float(row["best_se"]) == float(last["best_se"])
        assert row["status"] == status(run)["state"] and row["status"] in ("finished", "reached")
        assert row["best_checkpoint"] == str(run / "checkpoints" / "best.safetensors")
        hit = first_at_target(run, target)
        assert (row["reached"] == "True") == (hit is not None) == (row["status"] == "reached")
        if hit is not None:
            assert int(row["train_steps_to_target"]) == int(hit["env_steps"])
            assert int(row["eval_steps_to_target"]) == int(hit["eval_steps"]) + int(hit["confirm_steps"])
            assert float(row["seconds_to_target"]) == pytest.approx(float(hit["wall_time"]), abs=1e-3)
    (group,) = summary_rows(sweep, "summary_seeds.csv")
    assert group["seeds"] == "2" and group["failed"] == "0"
    assert float(group["best_mean"]) == pytest.approx(sum(float(r["best"]) for r in rows) / 2)
    markdown = (sweep / "summary.md").read_text()
    assert "## Runs" in markdown and "## Over seeds" in markdown and "| 0 | seed=0 |" in markdown
    assert "over seeds" in proc.stdout and "confirmed best" in proc.stdout
    assert (sweep / "sweep.png").stat().st_size > 0 and "plots: sweep.png" in proc.stdout


def test_a_job_that_fails_at_run_time_leaves_the_others_to_finish(tmp_path):
    """fail_at=40 passes the up-front check (a probe plays few steps) and breaks in training."""
    sweep = tmp_path / "multi"
    args = ["env.id=faulty_env:Faulty-v0", "env.target=1000", "env.kwargs.mode=raise", "env.kwargs.fail_at=40,1000000"]
    proc = subprocess.run([*CLI, "train", "-m", *TINY, *args, "max_steps=256", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env=cli_env_with_tests(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    failed, finished = summary_rows(sweep)
    assert failed["status"] == "failed" and "simulated failure at step 40" in failed["error"]
    assert status(sweep / "0")["state"] == "failed" and "simulated failure" in status(sweep / "0")["error"]
    assert finished["status"] == "finished" and finished["best"]
    assert metrics_rows(sweep / "1")[-1]["env_steps"] == "256", "the other job ran its whole budget"
    assert "1 of 2 jobs failed" in proc.stdout
    assert "job 0 (env.kwargs.fail_at=40) failed: env.id=faulty_env:Faulty-v0 raised ValueError" in proc.stdout
    assert "failed:" in (sweep / "summary.md").read_text()


def test_a_single_run_that_fails_keeps_its_one_line_and_records_it(tmp_path):
    run = tmp_path / "run"
    args = ["env.id=faulty_env:Faulty-v0", "env.target=1000", "env.kwargs.mode=raise", "env.kwargs.fail_at=40"]
    proc = subprocess.run([*CLI, "train", *TINY, *args, "max_steps=256", f"hydra.run.dir={run}"],
                          cwd=tmp_path, env=cli_env_with_tests(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()][0].startswith("error: env.id=faulty_env")
    assert status(run)["state"] == "failed" and "simulated failure at step 40" in status(run)["error"]


def cli_env_with_tests() -> dict:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))  # faulty_env
    return env


# --- launchers -----------------------------------------------------------------------------------

LAUNCHERS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", ["hydra/launcher=submitit_local"]),
    "ray_local": ("hydra_plugins.hydra_ray_launcher",
                  ["hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_launcher_runs_the_jobs_side_by_side(tmp_path, launcher):
    module, args = LAUNCHERS[launcher]
    pytest.importorskip(module, reason=f'pip install "evorl-cli[{launcher.split("_")[0]}]"')
    sweep = tmp_path / "multi"
    ok(evorl("train", "-m", "seed=0,1", *TINY, "max_steps=512", *args, f"hydra.sweep.dir={sweep}",
             cwd=tmp_path, timeout=400))
    runs = [sweep / "0", sweep / "1"]
    for run in runs:
        assert status(run)["state"] in ("finished", "reached") and metrics_rows(run)
        assert (run / "checkpoints" / "best.safetensors").is_file()
        assert "torch threads: 1" in (run / "train.log").read_text(), "two jobs on 2 CPUs: one thread each"
    spans = [(status(r)["started"], status(r)["ended"]) for r in runs]
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"the jobs did not overlap: {spans}"
    assert {r["status"] for r in summary_rows(sweep)} <= {"finished", "reached"}
    assert len({status(r)["pid"] for r in runs}) == 2


@pytest.mark.slow
def test_the_optuna_sweeper_maximises_the_confirmed_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='pip install "evorl-cli[optuna]"')
    sweep = tmp_path / "multi"
    ok(evorl("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
             "hydra.sweeper.sampler.seed=0", "algo.lr=interval(0.0001,0.01)", *TINY, "max_steps=256",
             f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300))
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows = summary_rows(sweep)
    assert len(rows) == 2
    best = max(rows, key=lambda r: float(r["best"]))
    assert result["best_value"] == pytest.approx(float(best["best"]), abs=1e-4)
    assert f"algo.lr={result['best_params']['algo.lr']}" in best["overrides"]


# --- the up-front check and threads --------------------------------------------------------------

def test_every_combination_of_a_sweep_is_checked():
    from evorl_cli.cli import _sweep_jobs

    jobs = _sweep_jobs(["seed=range(0,300)", "algo.lr=0.1,0.2", "env=cartpole"], multirun=True)
    assert len(jobs) == 600 and jobs[-1] == ["seed=299", "algo.lr=0.2", "env=cartpole"]
    assert _sweep_jobs(["seed=0,1"], multirun=False) == [["seed=0,1"]]  # Hydra refuses it without -m
    optuna = _sweep_jobs(["hydra/sweeper=optuna", "algo.lr=interval(0.001,0.01)", "seed=1"], multirun=True)
    assert optuna == [["hydra/sweeper=optuna", "seed=1"]]


def test_a_bad_value_late_in_a_sweep_stops_it_before_any_job(tmp_path):
    proc = evorl("train", "-m", "algo.lr=0.001,0.002,0.003,-1", "seed=0,1", f"hydra.sweep.dir={tmp_path}/multi",
                 cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: algo.lr=-1")
    assert not (tmp_path / "multi").exists()


@pytest.mark.parametrize("launcher, cores, threads", [
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 8, 2),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 8, 1),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -5}, 8, 2),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 16}, 8, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, 8, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 6}, 8, 6),
    ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"remote": {}}}, 8, 1),
    ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
      "ray": {"remote": {"num_cpus": 3}}}, 8, 3),
])
def test_parallel_jobs_split_the_cores(launcher, cores, threads):
    from evorl_cli.launch import threads_per_job

    assert threads_per_job(launcher, cores) == threads


# --- the summary of runs on disk, against numbers worked out by hand -----------------------------

def write_run(path: Path, overrides: list[str], state: str, target: float | None,
              generations: list[tuple[int, int, int, float, float | None, float | None]], pid: int = 0,
              error: str | None = None) -> None:
    """A run directory as `evorl train` leaves it: overrides, status, metrics.csv (two members a
    generation; per generation: env_steps, eval_steps, confirm_steps, wall_time, best, best_se)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "status.json").write_text(json.dumps({"state": state, "target": target, "error": error, "pid": pid,
                                                  "host": socket.gethostname()}))
    with open(path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, CsvLogger.FIELDS, restval="")
        writer.writeheader()
        for g, (env, ev, conf, wall, best, se) in enumerate(generations):
            for member in range(2):
                writer.writerow({"generation": g, "member": member, "env_steps": env, "eval_steps": ev,
                                 "confirm_steps": conf, "wall_time": wall,
                                 "best_score": "" if best is None else best, "best_se": "" if se is None else se})
    if any(best is not None for *_, best, _ in generations):
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "best.safetensors").write_bytes(b"")


@pytest.fixture
def finished_sweep(tmp_path) -> Path:
    """Two learning rates x three seeds, target 100, plus one interrupted and one running job."""
    sweep = tmp_path / "sweep"
    lr_a, lr_b = "algo.lr=0.001", "algo.lr=0.0003"
    # lr_a: best 10, 20, 40 (se 1, 2, 4); reached the target at 100 and 300 training steps; seed 2 never.
    write_run(sweep / "0", [lr_a, "seed=0", "env=cartpole"], "reached", 100,
              [(100, 10, 5, 1.5, 120.0, 1.0), (200, 20, 10, 3.0, 10.0, 1.0)])
    write_run(sweep / "1", [lr_a, "seed=1", "env=cartpole"], "reached", 100,
              [(100, 10, 0, 1.0, 50.0, 2.0), (300, 30, 15, 4.5, 150.0, 2.0), (400, 40, 20, 6.0, 20.0, 2.0)])
    write_run(sweep / "2", [lr_a, "seed=2", "env=cartpole"], "finished", 100,
              [(100, 10, 5, 2.0, 40.0, 4.0)])
    # lr_b: a failed job without a score, two that reached at 200 and 600 steps (best 110 and 130).
    write_run(sweep / "3", [lr_b, "seed=0", "env=cartpole"], "failed", 100, [], error="env blew up")
    write_run(sweep / "4", [lr_b, "seed=1", "env=cartpole"], "reached", 100,
              [(200, 50, 10, 8.0, 110.0, 5.0)])
    write_run(sweep / "5", [lr_b, "seed=2", "env=cartpole"], "reached", 100,
              [(300, 50, 0, 9.0, 90.0, 3.0), (600, 70, 30, 20.0, 130.0, 3.0)])
    # Killed without a word: recorded as running, its process gone. And a job still running (this process).
    write_run(sweep / "6", ["algo.lr=0.01", "seed=0", "env=cartpole"], "running", 100,
              [(100, 10, 5, 1.0, 5.0, 1.0)], pid=dead_pid())
    write_run(sweep / "7", ["algo.lr=0.01", "seed=1", "env=cartpole"], "running", 100, [], pid=os.getpid())
    return sweep


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_per_job_table_reads_each_run(finished_sweep):
    summary = sweeps.summarize(finished_sweep)
    assert [j.name for j in summary.jobs] == [str(i) for i in range(8)]
    assert [j.status for j in summary.jobs] == ["reached", "reached", "finished", "failed", "reached", "reached",
                                                "interrupted", "running"]
    job = summary.jobs[1]
    # the best of the last generation, reached at the second generation's counters
    assert (job.best, job.best_se) == (20.0, 2.0)
    assert (job.to_target.train_steps, job.to_target.eval_steps, job.to_target.seconds) == (300, 45, 4.5)
    assert summary.jobs[0].to_target.train_steps == 100 and summary.jobs[2].to_target is None
    assert summary.jobs[3].error == "env blew up" and summary.jobs[3].best is None
    assert summary.common == ["env=cartpole"]


def test_the_seed_table_against_numbers_worked_out_by_hand(finished_sweep):
    summary = sweeps.summarize(finished_sweep)
    groups = {g.setting: g for g in summary.groups}
    a = groups[("algo.lr=0.001", "env=cartpole")]
    assert (a.seeds, a.reached, a.failed) == (3, 2, 0)
    # best 10, 20, 40: mean 70/3; sample variance ((-40/3)^2 + (-10/3)^2 + (50/3)^2) / 2 = 700/3
    assert a.best_mean == pytest.approx(70 / 3) and a.best_std == pytest.approx(math.sqrt(700 / 3))
    # steps to target 100 and 300: median 200, quartiles 150 and 250; seconds 1.5 and 4.5
    assert (a.steps_median, a.steps_iqr) == (200, 100)
    assert (a.eval_steps_median, a.eval_steps_iqr) == (30, 15)  # 15 and 45
    assert a.seconds_median == pytest.approx(3.0) and a.seconds_iqr == pytest.approx(1.5)
    b = groups[("algo.lr=0.0003", "env=cartpole")]
    assert (b.seeds, b.reached, b.failed) == (3, 2, 1)
    assert b.best_mean == pytest.approx(120) and b.best_std == pytest.approx(math.sqrt(200))  # 110, 130
    assert (b.steps_median, b.steps_iqr) == (400, 200)  # 200 and 600
    assert b.seconds_median == pytest.approx(14.0) and b.seconds_iqr == pytest.approx(6.0)  # 8 and 20
    c = groups[("algo.lr=0.01", "env=cartpole")]
    assert c.best_mean == 5.0 and math.isnan(c.best_std) and math.isnan(c.steps_median)


def test_evorl_summarize_rebuilds_the_tables_and_files(finished_sweep, tmp_path):
    proc = evorl("summarize", str(finished_sweep), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # job 3 failed, as the sweep's own exit said
    assert "interrupted" in proc.stdout and "running" in proc.stdout
    assert "job 3 (algo.lr=0.0003 seed=0) failed: env blew up" in proc.stdout
    rows = summary_rows(finished_sweep)
    assert [r["status"] for r in rows][:4] == ["reached", "reached", "finished", "failed"]
    seeds = summary_rows(finished_sweep, "summary_seeds.csv")
    assert [(r["setting"], r["seeds"], r["reached"]) for r in seeds] == [
        ("algo.lr=0.001 env=cartpole", "3", "2"), ("algo.lr=0.0003 env=cartpole", "3", "2"),
        ("algo.lr=0.01 env=cartpole", "2", "0")]
    assert float(seeds[0]["best_std"]) == pytest.approx(math.sqrt(700 / 3))
    markdown = (finished_sweep / "summary.md").read_text()
    assert "| algo.lr=0.001 | 3 | 23.3 ± 15.3 | 2/3 | 200 [100] | 3.0 [1.5] |" in markdown
    # and on a plain directory holding the runs one level down
    assert evorl("summarize", str(finished_sweep.parent), cwd=tmp_path).returncode == 1
    assert len(summary_rows(finished_sweep.parent)) == 8


def test_evorl_summarize_refuses_a_directory_without_runs(tmp_path):
    proc = evorl("summarize", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "no runs" in proc.stderr


@pytest.mark.parametrize("missing, extra", [("hydra/launcher/joblib", "joblib"), ("hydra/launcher/submitit_slurm", "submitit"),
                                            ("hydra/launcher/ray", "ray"), ("hydra/sweeper/optuna", "optuna")])
def test_a_launcher_without_its_plugin_names_the_extra(missing, extra):
    """What Hydra raises when the plugin is not installed (ray_local's defaults name `ray`)."""
    from hydra.errors import MissingConfigException

    from evorl_cli.cli import _compose_error

    group, _, option = missing.rpartition("/")
    exc = MissingConfigException(f"Could not find '{missing}'", missing_cfg_file=missing, options=["basic"])
    assert _compose_error(exc, "train") == f'{group}={option} needs Hydra\'s plugin for it: pip install "evorl-cli[{extra}]"'
