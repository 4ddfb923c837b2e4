"""Records of a real short run: metrics.csv with the learner's diagnostics, TensorBoard events read
back with TensorBoard's own reader, a W&B offline run, the plots, the lineage, read_run, and the
terminal output at 80 columns."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_config
from rich.console import Console

from evorl_cli import checkpoint as ckpt
from evorl_cli import read_run
from evorl_cli.errors import EvorlError
from evorl_cli.fitness import Confirmation, Measurement
from evorl_cli.hparams import MUTABLE_HPS
from evorl_cli.ppo import DIAGNOSTICS
from evorl_cli.records import GenerationRecord, generation_table
from evorl_cli.records.lineage import Lineage, mutation_kind
from evorl_cli.records.read import read_rows
from evorl_cli.train import train

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
pytest.importorskip("matplotlib")

PNGS = ["fitness.png", "hyperparameters.png", "architecture.png", "learner.png", "lineage.png"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """A tiny run (2 members, 4 generations) with every logger on and the plots at the end; wandb
    offline, its own files kept under the temp dir. Returns (run dir, what the terminal showed)."""
    tmp = tmp_path_factory.mktemp("records")
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR",
                                            "WANDB_DATA_DIR", "WANDB_SILENT")}
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", **{k: str(tmp / "wandb_home") for k in (
        "WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")})
    config = tiny_config(**{"logger.tensorboard.enabled": True, "logger.wandb.enabled": True,
                            "logger.wandb.mode": "offline", "plot.on_finish": True,
                            "mutation.no_mutation": 0.2, "mutation.architecture": 0.4})
    out = io.StringIO()
    try:
        train(config, tmp / "run", Console(file=out, width=80, force_terminal=False))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return tmp / "run", out.getvalue()


def test_metrics_csv_keeps_its_columns_and_adds_the_diagnostics(run):
    run_dir, _ = run
    rows = read_rows(run_dir)
    assert len(rows) == 2 * 4
    assert list(rows[0])[:19] == ["generation", "member", "parent", "mutation", "env_steps", "eval_steps",
                                  "confirm_steps", "wall_time", "eval_time", "fitness", "screen_score",
                                  "confirmed_score", "confirmed_se", "best_score", "best_se", "train_return",
                                  "hidden_sizes", "activation", "rnn_hidden"]
    for row in rows:
        assert all(isinstance(row[n], (int, float)) and math.isfinite(row[n]) for n in DIAGNOSTICS), row
        # One rollout of 32 steps x 2 envs (64 samples) a generation, no KL stop: every member takes
        # update_epochs x ceil(64 / its batch_size) optimiser steps.
        assert row["optimizer_steps"] == row["update_epochs"] * math.ceil(64 / row["batch_size"])
        assert 0 <= row["clip_fraction"] <= 1 and row["approx_kl"] >= 0 and row["grad_norm"] > 0
        assert row["hidden_units"] == sum(int(w) for w in str(row["hidden_sizes"]).split("x")) + row["rnn_hidden"]
        assert row["train_steps_per_s"] > 0


def _tensorboard_scalars(run_dir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_every_scalar_against_env_steps(run):
    run_dir, _ = run
    scalars = _tensorboard_scalars(run_dir)
    rows = read_rows(run_dir)
    expected = {"population/fitness_max", "population/fitness_mean", "population/confirmed_best",
                "population/train_steps_per_s", "population/train_return_mean"}
    for p in (0, 1):
        expected |= {f"fitness/member_{p}", f"train_return/member_{p}", f"arch/hidden_units/member_{p}",
                     f"hp/lr/member_{p}", f"hp/batch_size/member_{p}"}
        expected |= {f"learner/{n}/member_{p}" for n in DIAGNOSTICS}
    assert expected <= set(scalars), sorted(expected - set(scalars))
    # The values are the records': member 1's fitness and batch size at each generation's env steps.
    for tag, column in (("fitness/member_1", "fitness"), ("hp/batch_size/member_1", "batch_size"),
                        ("learner/clip_fraction/member_1", "clip_fraction")):
        got = [(e.step, e.value) for e in scalars[tag]]
        want = [(r["env_steps"], r[column]) for r in rows if r["member"] == 1]
        assert [s for s, _ in got] == [s for s, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-4, atol=1e-4)


def _wandb_history(run_dir: Path) -> list[dict]:
    """The history records of an offline W&B run, read from its .wandb file (a LevelDB-style log of
    protobuf records: 7-byte file header, 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, block, pos, chunk, history = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return history


def test_wandb_offline_run_holds_the_scalars(run):
    run_dir, _ = run
    history = _wandb_history(run_dir)
    rows = read_rows(run_dir)
    assert [h["env_steps"] for h in history] == sorted({r["env_steps"] for r in rows})
    assert [h["fitness/member_0"] for h in history] == pytest.approx([r["fitness"] for r in rows if r["member"] == 0],
                                                                      abs=1e-4)
    assert history[-1]["population/confirmed_best"] == pytest.approx(rows[-1]["best_score"], abs=1e-3)
    assert all(f"learner/{n}/member_1" in history[-1] for n in DIAGNOSTICS)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_run_ends_with_its_plots(run):
    run_dir, _ = run
    assert sorted(p.name for p in run_dir.glob("*.png")) == sorted(PNGS)
    for name in PNGS:
        assert _png_size(run_dir / name) == (1000, 600)


def test_lineage_matches_metrics_csv_and_the_runs_own_fitness_history(run):
    """Parents read back from metrics.csv, followed from the last generation, give the fitness
    history the run kept along each lineage itself (RunState.history in the checkpoint)."""
    run_dir, _ = run
    rows = read_rows(run_dir)
    lineage = Lineage.from_rows(rows)
    for r in rows:
        i = list(lineage.generations).index(r["generation"])
        assert lineage.parent[i, r["member"]] == r["parent"]
        assert lineage.kind[i][r["member"]] == mutation_kind(r["mutation"])
    assert (lineage.parent[0] == -1).all() and (lineage.parent[1:] >= 0).all()
    latest = ckpt.load(run_dir, prefer="latest").meta
    last = len(lineage.generations) - 1
    for p, member in enumerate(latest["members"]):
        path = lineage.ancestry(last, latest["state"]["parents"][p])
        assert [lineage.fitness[i, m] for i, m in path] == pytest.approx(member["fitness_history"], abs=1e-4)


@pytest.mark.parametrize("note,kind", [("elite", "elite"), ("init", "init"), ("none", "none"),
                                       ("params sd=0.1", "parameters"), ("nodes L0 64->80", "architecture"),
                                       ("layer +1 (3 layers)", "architecture"), ("hidden 32->48", "architecture"),
                                       ("layer -1 (1 layers)", "architecture"), ("nodes L1 64->48", "architecture"),
                                       ("none (at min width)", "none"),
                                       ("activation tanh->relu", "activation"), ("lr 0.001->0.0012", "rl_hp"),
                                       ("none; diverged (NaN), replaced by a copy of 0", "none")])
def test_mutation_kinds(note, kind):
    assert mutation_kind(note) == kind


def test_read_run_gives_a_dataframe_or_plain_rows(run, monkeypatch):
    run_dir, _ = run
    frame = read_run(run_dir)
    rows = read_rows(run_dir)
    assert len(frame) == len(rows) and list(frame.columns) == list(rows[0])
    assert frame["fitness"].tolist() == pytest.approx([r["fitness"] for r in rows])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    assert repr(read_run(run_dir)) == repr(rows)  # repr: NaN (no training episode ended) equals itself


def test_terminal_output_of_the_run_fits_80_columns_and_ends_with_the_summary(run):
    run_dir, shown = run
    assert "…" not in shown
    assert max(len(line) for line in shown.splitlines()) <= 80
    best = ckpt.load(run_dir, prefer="best").meta["confirmed"]
    score = Confirmation.from_dict(best)
    assert f"confirmed best {score.score:.2f} ± {score.std_error:.2f}" in shown
    for command in ("evorl eval ckpt=", "evorl render ckpt=", "evorl plot run="):
        assert command in shown
    assert "best.safetensors" in shown


def _wide_record() -> GenerationRecord:
    """Numbers that a naive table cuts at 80 columns: large negative returns, tiny coefficients."""
    size = 4
    screen = Measurement(-498.25, 3.5, 100, 0, 0, True, 50000)
    conf = Confirmation(7, 2, -495.5, screen, Measurement(-501.125, 2.25, 100, 0, 0, True, 50000))
    hp = {n: np.full(size, 3) if n in ("batch_size", "update_epochs") else np.full(size, 0.000123456)
          for n in MUTABLE_HPS}
    hp["batch_size"] = np.array([128, 64, 2048, 512])
    learner = {n: np.array([0.0123, -1.5e-5, 123.456, 7.0]) for n in DIAGNOSTICS}
    return GenerationRecord(7, 12_345_678, 987_654, 123_456, 1234.5, 100.0,
                            np.array([-500.123456, -499.99, -12345.678, 0.000123]), np.array([-500.5, np.nan, -1e5, 3.0]),
                            [0, 0, 1, 3], ["elite", "nodes L1 64->128", "lr 0.0001235->0.0001481",
                                           "activation leaky_relu->gelu; diverged (NaN), replaced by a copy of 0"],
                            conf, conf, hp, ["256x256x256 leaky_relu"] * size, [[256, 256, 256]] * size,
                            ["leaky_relu"] * size, np.zeros(size, dtype=np.int64), learner, 12345.6)


@pytest.mark.parametrize("tuned", [["lr"], ["batch_size", "clip_coef", "ent_coef", "gamma", "lr"]])
def test_generation_table_never_cuts_a_number_at_80_columns(tuned):
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    console.print(generation_table(_wide_record(), tuned, "eval", console.width))
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for number in ("-500", "-12.3k", "1.2e-04", "-501±2.25", "12.3M"):
        assert number in text, number


def test_a_wide_terminal_shows_more_columns():
    def render(width):
        out = io.StringIO()
        console = Console(file=out, width=width, force_terminal=False)
        console.print(generation_table(_wide_record(), ["lr"], "eval", console.width))
        return out.getvalue()

    narrow, wide = render(80), render(200)
    assert "entropy" not in narrow and "entropy" in wide and "arch" in wide
    assert max(len(line) for line in wide.splitlines()) <= 200 and "…" not in wide


def test_plot_command_positional_and_keyword_and_a_sweep(run, tmp_path):
    run_dir, _ = run
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    target = tmp_path / "copy"
    target.mkdir()
    (target / "metrics.csv").write_bytes((run_dir / "metrics.csv").read_bytes())
    for args in ([str(target)], [f"run={target}"]):
        proc = subprocess.run([sys.executable, "-m", "evorl_cli.cli", "plot", *args], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in target.glob("*.png")) == sorted(PNGS)
    sweep = tmp_path / "sweep"
    for job in ("0_seed=0", "1_seed=1"):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "metrics.csv").write_bytes((run_dir / "metrics.csv").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "evorl_cli.cli", "plot", str(sweep)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _png_size(sweep / "sweep.png") == (1000, 600)
    proc = subprocess.run([sys.executable, "-m", "evorl_cli.cli", "plot", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such directory" in proc.stderr


def test_missing_extras_give_one_line_and_plots_never_fail_a_run(run, tmp_path, monkeypatch):
    from evorl_cli.records import LoggerContext, Loggers, plot_on_finish
    from evorl_cli.loggers import check_installed

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    config = tiny_config(**{"logger.tensorboard.enabled": True})
    with pytest.raises(EvorlError, match=r'pip install "evorl-cli\[tensorboard\]"'):
        Loggers.for_run(LoggerContext(config, tmp_path, Console(quiet=True)))
    with pytest.raises(EvorlError, match=r'^logger tensorboard needs the tensorboard package: pip install'):
        check_installed(config.logger)  # what the CLI checks before it makes a run directory
    check_installed(tiny_config(**{"logger.wandb.enabled": True}).logger)  # installed: passes
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = io.StringIO()
    plot_on_finish(run[0], Console(file=out, width=200))
    assert out.getvalue().strip() == 'plots skipped: plots need matplotlib: pip install "evorl-cli[plot]"'


def test_a_switched_off_target_does_not_flatten_the_fitness_plot():
    """env.target=1e18 (a run that must use its whole budget) is named in the legend but not drawn:
    drawn, it would squeeze every return into one flat line. A real target far above the returns
    (Hopper's 3,800 beside 1,000) is still drawn."""
    from evorl_cli.records.plots import _on_scale

    returns = np.array([[180.0, 1000.0], [900.0, 1028.0]])
    assert _on_scale(3800.0, returns) and _on_scale(-100.0, -returns)
    assert not _on_scale(1e18, returns) and not _on_scale(1e9, -returns)
    assert _on_scale(200.0, np.array([np.nan]))  # nothing to compare with: draw it


def test_a_generation_without_any_fitness_plots_as_a_gap_without_numpy_warnings(tmp_path):
    """selection=train before any training episode finished: every member's fitness is NaN. The
    plots leave a gap there and print nothing (numpy warned 'All-NaN slice' on the terminal)."""
    import warnings

    from evorl_cli.records.plots import plot_run

    run = tmp_path / "run"
    # 2 steps per env a generation: no CartPole episode ends in the first one
    train(tiny_config(**{"evolution.selection": "train", "algo.rollout_steps": 2, "algo.batch_size": 4,
                         "evolution.evo_steps": 2, "max_steps": 8 * 4, "plot.on_finish": False,
                         "hp_config.batch_size.min": 2, "hp_config.batch_size.max": 4}),
          run, Console(quiet=True))
    rows = read_rows(run)
    assert all(r["fitness"] is None or math.isnan(r["fitness"]) for r in rows if r["generation"] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plot_run(run)
    assert {p.name for p in paths} >= {"fitness.png"}


def test_a_run_that_tunes_no_hyperparameter_plots_without_matplotlib_warnings(tmp_path):
    """hp_config={} leaves the hyperparameter plot a 'nothing recorded' panel: no legend to draw, and
    matplotlib's 'No artists with labels' warning no longer reaches the terminal."""
    import warnings

    from evorl_cli.records.plots import plot_run

    run = tmp_path / "run"
    train(tiny_config(**{"hp_config": {}, "max_steps": 256, "plot.on_finish": False}), run, Console(quiet=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plot_run(run)
    assert "hyperparameters.png" in {p.name for p in paths}
