"""The `evorl` command line, run as a user would: in a subprocess, with exit codes and stderr checked."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

from evorl_cli.config import MUTABLE_HPS
from evorl_cli.ppo import DIAGNOSTICS

CLI = [sys.executable, "-m", "evorl_cli.cli"]
# 2 members x 2 envs x 32 steps = 128 env steps per generation (evo_steps=64 -> one rollout).
TINY = ["env=cartpole", "population.size=2", "env.num_envs=2", "algo.rollout_steps=32", "algo.batch_size=32",
        "evolution.evo_steps=64", "evolution.selection_episodes=2", "evolution.confirm_episodes=4", "evolution.eval_max_steps=50", "progress=false",
        "env.backend=gymnasium", "device=cpu"]
STEPS_PER_GENERATION = 128
METRICS_COLUMNS = ["generation", "member", "parent", "mutation", "env_steps", "eval_steps", "confirm_steps",
                   "wall_time", "eval_time", "fitness", "screen_score", "confirmed_score", "confirmed_se", "best_score", "best_se",
                   "train_return", "hidden_sizes", "activation", "rnn_hidden", *MUTABLE_HPS,
                   "hidden_units", "train_steps_per_s", *DIAGNOSTICS]


def cli_env() -> dict:
    return {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def evorl(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def generations_in(run: Path) -> int:
    return len({int(row["generation"]) for row in metrics_rows(run)})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """`evorl train` for 2 generations; shared by the eval, inspect and render tests."""
    base = tmp_path_factory.mktemp("cli")
    run = base / "run"
    ok(evorl("train", *TINY, "max_steps=256", f"hydra.run.dir={run}", cwd=base))
    return run


# --- train, eval, inspect, render -----------------------------------------------------------------

def test_train_writes_run_directory(trained_run):
    from omegaconf import OmegaConf

    assert (trained_run / ".hydra" / "config.yaml").is_file()
    saved = OmegaConf.load(trained_run / ".hydra" / "config.yaml")
    assert saved.env.id == "CartPole-v1" and saved.population.size == 2 and saved.max_steps == 256
    assert (trained_run / "checkpoints" / "latest.safetensors").is_file()
    assert (trained_run / "checkpoints" / "best.safetensors").is_file()
    assert not [p.name for p in (trained_run / "checkpoints").iterdir() if p.name.startswith(".")], "temp files left"

    with open(trained_run / "metrics.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == METRICS_COLUMNS
    rows = metrics_rows(trained_run)
    assert [(int(r["generation"]), int(r["member"])) for r in rows] == [(g, p) for g in range(2) for p in range(2)]
    for row in rows:
        assert int(row["env_steps"]) == (int(row["generation"]) + 1) * STEPS_PER_GENERATION
        assert 0 < float(row["fitness"]) <= 50  # eval episodes capped at 50 steps
        assert 0 < float(row["best_score"]) <= 50 and float(row["best_se"]) >= 0
        assert row["hidden_sizes"] and row["activation"]
    for g in range(2):  # 2 members x 2 selection episodes a generation, each at most 50 steps
        eval_steps = {int(r["eval_steps"]) for r in rows if int(r["generation"]) == g}
        assert len(eval_steps) == 1 and 4 * (g + 1) <= eval_steps.pop() <= 200 * (g + 1)
    confirmed = [r for r in rows if r["confirmed_score"]]
    assert confirmed and confirmed[0]["generation"] == "0"  # the first candidate always passes its screen
    assert {r["mutation"] for r in rows if r["generation"] == "0"} == {"init"}
    if importlib.util.find_spec("matplotlib"):  # plot.on_finish is on by default
        assert {p.name for p in trained_run.glob("*.png")} == {"fitness.png", "hyperparameters.png",
                                                              "architecture.png", "learner.png", "lineage.png"}


def test_eval(trained_run, tmp_path):
    proc = ok(evorl("eval", f"ckpt={trained_run}", "episodes=3", cwd=tmp_path))
    match = re.search(r"mean return (-?\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout
    assert 0 < float(match.group(1)) <= 500
    assert "over 3 episodes" in proc.stdout and "deterministic actions, as the run evaluated" in proc.stdout
    assert "confirmed in training" in proc.stdout
    assert "episode" not in proc.stdout.split("mean return")[0].lower().replace("episodes", ""), "no per-episode rows"
    rows = ok(evorl("eval", f"ckpt={trained_run}", "episodes=3", "per_episode=true", cwd=tmp_path)).stdout
    assert len(re.findall(r"^│\s+[0-2] │\s+[0-2] │", rows, flags=re.M)) == 3, rows
    assert list(tmp_path.iterdir()) == [], "eval must not write anything"


def test_inspect(trained_run, tmp_path):
    proc = ok(evorl("inspect", f"ckpt={trained_run}", cwd=tmp_path))
    assert "CartPole-v1" in proc.stdout and "population 2" in proc.stdout
    assert "generation 2" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_render_writes_gif(trained_run, tmp_path):
    out = tmp_path / "x.gif"
    fps = 10  # 100 ms a frame: exactly representable in GIF's centisecond delays
    proc = ok(evorl("render", f"ckpt={trained_run}", f"out={out}", "max_steps=30", f"fps={fps}", cwd=tmp_path))
    assert out.is_file()
    match = re.search(r"episode 0: return (\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout
    steps = int(float(match.group(1)))  # CartPole pays 1 per step
    assert 1 <= steps <= 30

    frames = iio.imread(out, index=None)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    height, width = env.render().shape[:2]
    env.close()
    assert frames.ndim == 4 and frames.shape[1:3] == (height, width)
    assert all(float(f.std()) > 0 for f in frames), "blank frame"
    assert any(not np.array_equal(f, frames[0]) for f in frames[1:]), "all frames identical"

    # One frame per step plus the first. GIF writers fold identical consecutive frames into one with a
    # longer delay, so count frames in time: total delay / delay of one frame.
    delays = [iio.immeta(out, index=i)["duration"] for i in range(len(frames))]
    assert sum(delays) == (steps + 1) * 1000 // fps, delays
    assert 2 <= len(frames) <= steps + 1
    assert f"wrote {steps + 1} frames" in proc.stdout


# --- Hydra's own flags and multirun ---------------------------------------------------------------

def test_train_help_lists_config_groups(tmp_path):
    proc = ok(evorl("train", "--help", cwd=tmp_path))
    out = proc.stdout
    assert "Configuration groups" in out
    for group in ("algo", "env", "net", "mutation", "hp_config"):
        assert re.search(rf"^{group}: ", out, re.MULTILINE), f"group {group} not listed"
    assert re.search(r"^env: .*cartpole", out, re.MULTILINE)
    # The tunable hyperparameters, with type and valid range (the oracle: written out by hand).
    ranges = {"lr": ("float", "(0, inf)"), "batch_size": ("int", "[1, rollout]"), "ent_coef": ("float", "[0, inf)"),
              "vf_coef": ("float", "[0, inf)"), "clip_coef": ("float", "[0, inf)"), "gamma": ("float", "[0, 1]"),
              "gae_lambda": ("float", "[0, 1]"), "max_grad_norm": ("float", "[0, inf)"),
              "update_epochs": ("int", "[1, inf)")}
    assert set(ranges) == set(MUTABLE_HPS)
    for name, (kind, valid) in ranges.items():
        assert re.search(rf"^  {name} +{kind} +{re.escape(valid)} ", out, re.MULTILINE), name
    assert "relative weights" in out and "== Tunable hyperparameters ==" in out
    assert list(tmp_path.iterdir()) == []


def test_train_cfg_job_prints_config(tmp_path):
    proc = ok(evorl("train", "--cfg", "job", "env=cartpole", "population.size=3", cwd=tmp_path))
    assert "population:" in proc.stdout and "size: 3" in proc.stdout
    assert "id: CartPole-v1" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "--cfg job must not start a run"


def test_multirun(tmp_path):
    sweep = tmp_path / "multi"
    ok(evorl("train", "-m", "seed=0,1", *TINY, "max_steps=128", f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 2, jobs
    for job in jobs:
        assert len(metrics_rows(job)) == 2
        assert (job / "checkpoints" / "latest.safetensors").is_file()
    from evorl_cli import checkpoint

    params = [checkpoint.load(job, prefer="latest").tensors["params"] for job in jobs]
    assert not params[0].equal(params[1]), "seed=0 and seed=1 should be different runs"
    assert not (tmp_path / "outputs").exists()


def test_an_unknown_option_in_a_list_names_the_groups_options(tmp_path):
    proc = evorl("train", "logger=[tensorboard,nope]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown logger option 'nope': choose one of csv, tensorboard, wandb" in proc.stderr


# --- bad input: one line, exit 2, nothing created -------------------------------------------------

BAD = [
    ("train", "env=nope"),
    ("train", "algo.nope=1"),
    ("train", "population.size=0"),
    ("train", "evolution.tournament_size=99"),
    ("train", "hp_config.lr.min=1", "hp_config.lr.max=0.1"),
    ("train", "algo.lr=-0.1"),
    ("train", "algo.batch_size=100000"),
    ("train", "env.id=NoSuchEnv-v0"),
    ("train", "algo.lr=abc"),
    ("train", "resume={tmp}/missing"),
    ("train", "-m", "algo.lr=0.001,-1"),  # a bad combination stops the sweep before any job runs
    ("train", "net=lstm", "algo.max_seq_len=7"),
    ("train", "net=nope"),
    ("train", "env=acrobot", "net=cnn"),  # a CNN on a vector observation
    ("train", "env=pixel_quadrant", "net=mlp"),  # images without a CNN
    ("eval",),
    ("eval", "ckpt={tmp}/missing"),
    ("render", "ckpt={tmp}/notes.txt"),
    ("inspect", "ckpt={tmp}/notes.txt"),
    ("frobnicate", "env=cartpole"),
    ("train", "logger=[tensorboard,nope]"),
    ("plot", "run={tmp}/notes.txt"),
    ("plot", "run={tmp}"),  # no metrics.csv in it or below
    ("summarize", "{tmp}"),  # no runs in it
]


if not __import__("torch").cuda.is_available():
    BAD.append(("train", "device=cuda"))


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a).replace("{tmp}/", "") for a in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] == "train":
        args += [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/multi"]
    proc = evorl(*args, cwd=tmp_path)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("error:"), lines[0]
    assert len(lines[0]) > len("error: ") + 10, "the message should say what is wrong"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "bad input must not create anything"


def test_bad_input_messages_name_the_problem(tmp_path):
    proc = evorl("train", "env=nope", cwd=tmp_path)
    assert "nope" in proc.stderr and "cartpole" in proc.stderr
    proc = evorl("train", "algo.lr=-0.1", cwd=tmp_path)
    assert "algo.lr" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_net_that_does_not_fit_the_observations_names_the_fix(tmp_path):
    obs_dim = gym.make("Acrobot-v1").observation_space.shape[0]  # the oracle: what Gymnasium says it observes
    proc = evorl("train", "env=acrobot", "net=cnn", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"net=cnn needs image observations; Acrobot-v1 observes a vector of {obs_dim}: use net=mlp" in proc.stderr
    proc = evorl("train", "env=pixel_quadrant", "net=lstm", cwd=tmp_path)
    assert proc.returncode == 2
    import evorl_cli.envs  # noqa: F401  registers evorl/PixelQuadrant-v0

    height, width, channels = gym.make("evorl/PixelQuadrant-v0").observation_space.shape
    assert f"observes images ({channels}x{height}x{width})" in proc.stderr and "use net=cnn" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def _unwritable_dirs(tmp_path: Path) -> list[str]:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a directory would go\n")
    dirs = [str(blocker / "run")]
    if Path("/proc/self").is_dir():  # Linux: nobody, root included, can make a directory in /proc
        dirs.append("/proc/evorl-nope")
    for path in dirs:  # the oracle: the operating system refuses to make them
        with pytest.raises(OSError):
            os.makedirs(path)
    return dirs


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_an_output_directory_that_cannot_be_made_is_refused_up_front(tmp_path, multirun):
    for path in _unwritable_dirs(tmp_path):
        if multirun:
            proc = evorl("train", "-m", "seed=0,1", f"hydra.sweep.dir={path}", cwd=tmp_path)
            key = "hydra.sweep.dir"
        else:
            proc = evorl("train", f"hydra.run.dir={path}", cwd=tmp_path)
            key = "hydra.run.dir"
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {key}={path}"), proc.stderr
        assert f"set {key} to a writable location" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "nothing may be left behind"
    assert not [p for p in Path("/proc").glob(".evorl-write-check-*")]


def test_a_missing_extra_is_named_with_its_brackets(tmp_path):
    # Box2D made unimportable (installed or not) by a stand-in earlier on the path.
    fake = tmp_path / "fake"
    (fake / "Box2D").mkdir(parents=True)
    (fake / "Box2D" / "__init__.py").write_text("raise ImportError('simulated: Box2D is not installed')\n")
    env = {**cli_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([*CLI, "train", "env.id=LunarLander-v3", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == 'error: env.id=LunarLander-v3 needs Box2D: pip install "evorl-cli[box2d]"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake"]


def test_a_new_env_id_warns_about_the_presets_target_and_still_runs(tmp_path):
    # TINY is env=cartpole (target 475); Acrobot-v1 scores -500..0, so 475 would never end the run.
    run = tmp_path / "run"
    proc = ok(evorl("train", *TINY, "env.id=Acrobot-v1", "max_steps=128", f"hydra.run.dir={run}", cwd=tmp_path))
    threshold = gym.spec("Acrobot-v1").reward_threshold
    warning = (f"warning: env.id=Acrobot-v1 keeps env.target=475 from env=cartpole (made for CartPole-v1): "
               f"set env.target=<score for Acrobot-v1>, or env.target=null for its registered threshold ({threshold:g})")
    assert [line for line in proc.stderr.splitlines() if line.startswith("warning:")] == [warning]
    assert (run / "checkpoints" / "latest.safetensors").is_file()


# --- interrupt and resume -------------------------------------------------------------------------

def _default_sigint() -> None:
    # A child started from a non-interactive shell may inherit SIGINT as ignored; a user's terminal
    # does not do that, so give the child the default disposition (Python turns it into KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_then_resume(tmp_path, signum):
    from evorl_cli import checkpoint

    run = tmp_path / "run"
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([*CLI, "train", *TINY, "max_steps=10000000", f"hydra.run.dir={run}"],
                                cwd=tmp_path, env=cli_env(), stdout=out, stderr=err, preexec_fn=_default_sigint)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"train ended early: {(tmp_path / 'err.txt').read_text()}"
                assert time.monotonic() < deadline, "no generation finished in time"
                if (run / "checkpoints" / "latest.safetensors").is_file() and (run / "metrics.csv").is_file() \
                        and len(metrics_rows(run)) >= 1:
                    break
                time.sleep(0.1)
            proc.send_signal(signum)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = (tmp_path / "err.txt").read_text()
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    hint = re.search(r"resume with: evorl train resume=(\S+)", stderr)
    assert hint, stderr
    assert Path(hint.group(1)) == run
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")], "temp files left"

    ckpt = checkpoint.load(run, prefer="latest")
    done = ckpt.meta["state"]["env_steps"]
    generation = ckpt.meta["state"]["generation"]
    assert done == generation * STEPS_PER_GENERATION
    before = generations_in(run)
    assert before >= 1

    # Follow the hint literally, with a budget of two more generations.
    ok(evorl("train", f"resume={hint.group(1)}", f"max_steps={done + 2 * STEPS_PER_GENERATION}", cwd=tmp_path))
    after = checkpoint.load(run, prefer="latest").meta["state"]
    assert after["generation"] == generation + 2
    assert after["env_steps"] == done + 2 * STEPS_PER_GENERATION
    assert generations_in(run) == generation + 2 and generation + 2 > before
    assert max(int(r["generation"]) for r in metrics_rows(run)) == generation + 1
    assert not (tmp_path / "outputs").exists(), "a resumed run writes into its own directory"


def test_resume_keeps_the_run_config_record(trained_run, tmp_path):
    """A resume writes into the run's own directory; Hydra must not overwrite the run's .hydra/config.yaml
    with the config composed from the resume command alone (default env, default population)."""
    from omegaconf import OmegaConf

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ok(evorl("train", f"resume={run}", "max_steps=384", cwd=tmp_path))
    assert generations_in(run) == 3
    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert saved.env.id == "CartPole-v1" and saved.population.size == 2
