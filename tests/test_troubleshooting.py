"""The README's Troubleshooting table, row by row: each bad input or fault is run for real and must
print what the table says (its fragments, in order), exit as it says, show no traceback and leave
nothing behind.

A row whose first cell is one command in backticks (`evorl train algo.lr=0`) runs that command
in-process through `cli.main`, with `<placeholders>` standing for files the fixtures make; any
other row names a scenario in SCENARIOS. Preflight errors happen before Hydra starts anything, so
running in-process keeps the file fast.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file

import evorl_cli.train as train_module
from helpers import TINY_RUN

from evorl_cli import checkpoint, cli
from evorl_cli.checkpoint import FORMAT_VERSION, META_KEY
from evorl_cli.config import build_train_config

README = Path(__file__).parents[1] / "README.md"
TESTS = Path(__file__).parent
TINY = {**TINY_RUN, "max_steps": 256}


# --- the table ---------------------------------------------------------------------------------------

def _cells(line: str) -> list[str]:
    """A markdown table row's cells ('|' inside backticks, escaped as '\\|', stays in its cell)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def readme_rows() -> list[tuple[str, str, str]]:
    """(input, what evorl prints, fix) for every row of the Troubleshooting table."""
    text = README.read_text()
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = [_cells(line) for line in section.splitlines() if line.startswith("|")]
    assert rows and rows[1][0].startswith("---"), "the section should hold one table"
    return [tuple(r) for r in rows[2:]]


def readme_count() -> int:
    match = re.search(r"(\d+) cases, all handled", README.read_text())
    assert match, "the Troubleshooting section says how many cases it covers"
    return int(match.group(1))


def expectation(printed: str) -> tuple[int, list[str]]:
    """The exit code a row implies (`error:` 2, `interrupted` 130, anything else 0) and the printed
    fragments: the backticked text split at each '…' (what the table shortened)."""
    quoted = re.findall(r"`([^`]+)`", printed)
    assert quoted, f"no printed text in {printed!r}"
    text = quoted[0]
    code = 2 if text.startswith("error:") else 130 if text.startswith("interrupted") else 0
    return code, [f.strip() for f in text.split("…") if f.strip()]


ROWS = readme_rows()


def test_the_readme_counts_its_rows_and_every_row_is_tested():
    assert readme_count() == len(ROWS) >= 40
    commands = {r[0] for r in ROWS if _command(r[0])}
    assert not set(SCENARIOS) - {r[0] for r in ROWS}, "a scenario without a README row"
    assert len({r[0] for r in ROWS}) == len(ROWS), "two rows with the same input"
    assert all(r[0] in SCENARIOS or r[0] in commands for r in ROWS)


# --- running a row -------------------------------------------------------------------------------------

def _command(cell: str) -> str | None:
    """The command line of a row that is one `evorl ...` command, without `evorl`."""
    match = re.fullmatch(r"`evorl ([^`]+)`", cell)
    return match.group(1) if match else None


def run_cli(argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """`evorl <argv>` in this process: (exit code, stderr, stdout)."""
    monkeypatch.setattr(sys, "argv", ["evorl", *argv])  # main rewrites it for Hydra
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # Hydra configures logging for the job (eval's `disabled` even switches off every logger that
    # exists): put this process's logging back afterwards, for the tests that run next.
    loggers = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    root = (logging.root.level, list(logging.root.handlers))
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.disabled = loggers.get(name, False)
        logging.root.setLevel(root[0])
        logging.root.handlers[:] = root[1]
    captured = capsys.readouterr()
    return code, captured.err, captured.out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """What the `<placeholders>` stand for: a trained run and checkpoints that are wrong in one way each."""
    base = tmp_path_factory.mktemp("files")
    run = base / "run"
    train_module.train(build_train_config(TINY), run, Console(quiet=True))
    good = checkpoint.load(run / "checkpoints" / "best.safetensors")
    data = (run / "checkpoints" / "latest.safetensors").read_bytes()
    (base / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (base / "corrupt.safetensors").write_bytes(os.urandom(4096))
    (base / "empty").mkdir()
    (base / "a_file").write_text("not a directory\n")
    with open(base / "pickle.safetensors", "wb") as fh:  # unpickling it would create the marker file
        pickle.dump({"params": _Booby(base / "PICKLE-RAN")}, fh)
    save_file({"weight": torch.ones(3)}, str(base / "other.safetensors"), metadata={"format": "pt"})
    save_file(good.tensors, str(base / "newer.safetensors"),
              metadata={META_KEY: json.dumps({**good.meta, "format_version": FORMAT_VERSION + 1})})
    code_run = base / "code_run" / "checkpoints"
    code_run.mkdir(parents=True)
    for name in ("latest", "best"):
        ckpt = checkpoint.load(run / "checkpoints" / f"{name}.safetensors")
        ckpt.meta["config"]["env"]["wrappers"] = [{"_target_": "hostile.touch_marker", "path": str(base / "CODE-RAN")}]
        save_file(ckpt.tensors, str(code_run / f"{name}.safetensors"), metadata={META_KEY: json.dumps(ckpt.meta)})
    return {"<run>": run, "<missing>": base / "no_such_run", "<empty-dir>": base / "empty",
            "<truncated-file>": base / "truncated.safetensors", "<corrupt-file>": base / "corrupt.safetensors",
            "<pickle-file>": base / "pickle.safetensors", "<other-safetensors>": base / "other.safetensors",
            "<newer-file>": base / "newer.safetensors", "<a-file>": base / "a_file",
            "<run-naming-code>": code_run.parent, "base": base}


class _Booby:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --- rows that are not one command ---------------------------------------------------------------------

def _space(env_id: str) -> Callable:
    def run(ctx) -> tuple[int, str, str]:
        import space_envs  # noqa: F401  registers the envs

        return run_cli(["train", f"env.id={env_id}", "env.backend=gymnasium", "env.target=0"], ctx.capsys,
                       ctx.monkeypatch)
    return run


def _without_box2d(ctx) -> tuple[int, str, str]:
    import gymnasium  # noqa: F401

    ctx.monkeypatch.setitem(sys.modules, "Box2D", None)  # `import Box2D` fails, installed or not
    for name in [n for n in sys.modules if n.startswith("gymnasium.envs.box2d")]:
        ctx.monkeypatch.delitem(sys.modules, name)
    return run_cli(["train", "env.id=LunarLander-v3"], ctx.capsys, ctx.monkeypatch)


def _train_in_process(ctx, config: dict, run: Path) -> tuple[int, str, str]:
    """train() wrapped as `evorl train` wraps it (user_errors), printing to the captured terminal."""
    code = 0
    try:
        with cli.user_errors(resume_hint=str(run)):
            train_module.train(build_train_config(config), run, Console(width=400))
    except SystemExit as exc:
        code = exc.code
    captured = ctx.capsys.readouterr()
    return code, captured.err, captured.out


def _env_raises(ctx) -> tuple[int, str, str]:
    """The real CLI in a subprocess, with tests/ on the path for the env module."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    args = ["train", "env=cartpole", "env.id=faulty_env:Faulty-v0", "env.kwargs.mode=raise", "env.kwargs.fail_at=40",
            "env.target=1000", "population.size=2", "env.num_envs=2", "algo.rollout_steps=32",
            "algo.batch_size=32", "evolution.evo_steps=64", "evolution.selection_episodes=2",
            "evolution.confirm_episodes=4", "evolution.eval_max_steps=15", "max_steps=512", "progress=false",
            f"hydra.run.dir={ctx.tmp}/run"]
    proc = subprocess.run([sys.executable, "-m", "evorl_cli.cli", *args], cwd=ctx.tmp, env=env, capture_output=True,
                          text=True, timeout=120)
    assert checkpoint.load(ctx.tmp / "run", prefer="latest").meta["state"]["generation"] == 1
    ctx.made.add("run")
    return proc.returncode, proc.stderr, proc.stdout


def _env_nan(ctx) -> tuple[int, str, str]:
    import faulty_env  # noqa: F401

    # Evaluation episodes capped at 15 steps, so the training env is the first to reach step 40.
    config = {**TINY, "max_steps": 512, "env": {"name": "faulty", "id": "Faulty-v0", "num_envs": 2,
                                                "backend": "gymnasium", "kwargs": {"mode": "nan_obs", "fail_at": 40}},
              "evolution": {**TINY["evolution"], "eval_max_steps": 15}}
    ctx.made.add("run")
    return _train_in_process(ctx, config, ctx.tmp / "run")


def _disk_full(ctx) -> tuple[int, str, str]:
    real, calls = checkpoint.save_file, []

    def save_file_on_a_full_disk(tensors, filename, metadata=None):
        if "latest" in os.path.basename(filename):  # the disk fills as the second latest is written
            calls.append(filename)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tensors, filename, metadata=metadata)

    ctx.monkeypatch.setattr(checkpoint, "save_file", save_file_on_a_full_disk)
    ctx.made.add("run")
    result = _train_in_process(ctx, TINY, ctx.tmp / "run")
    assert checkpoint.load(ctx.tmp / "run", prefer="latest").meta["state"]["generation"] in (0, 1)
    return result


def _member_diverges(ctx) -> tuple[int, str, str]:
    real, calls = train_module.ppo_update, []

    def update_that_blows_up_member_1(pop, *args):
        stats = real(pop, *args)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                pop.params[1] = float("nan")
        return stats

    ctx.monkeypatch.setattr(train_module, "ppo_update", update_that_blows_up_member_1)
    ctx.made.add("run")
    result = _train_in_process(ctx, TINY, ctx.tmp / "run")
    assert torch.isfinite(checkpoint.load(ctx.tmp / "run", prefer="latest").tensors["params"]).all()
    return result


def _interrupted(ctx) -> tuple[int, str, str]:
    real, calls = train_module.ppo_update, []

    def update_then_ctrl_c(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    ctx.monkeypatch.setattr(train_module, "ppo_update", update_then_ctrl_c)
    ctx.made.add("run")
    result = _train_in_process(ctx, TINY, ctx.tmp / "run")
    assert checkpoint.load(ctx.tmp / "run", prefer="latest").meta["state"]["generation"] == 1
    return result


SCENARIOS: dict[str, Callable] = {
    "`evorl train env.id=LunarLander-v3` without Box2D installed": _without_box2d,
    "an env with Dict observations": _space("space_envs:DictObs-v0"),
    "an env with Tuple observations": _space("space_envs:TupleObs-v0"),
    "an env with MultiBinary observations": _space("space_envs:MultiBinaryObs-v0"),
    "an env with MultiDiscrete observations": _space("space_envs:MultiDiscreteObs-v0"),
    "an env with Text observations": _space("space_envs:TextObs-v0"),
    "an env with images of 4 or more dimensions": _space("space_envs:Box4dObs-v0"),
    "an env with 2-D MultiDiscrete actions": _space("space_envs:MultiDiscrete2dAct-v0"),
    "an env with 2-D MultiBinary actions": _space("space_envs:MultiBinary2dAct-v0"),
    "an env with Dict or Tuple actions": _space("space_envs:DictAct-v0"),
    "an env with 2-D Box actions": _space("space_envs:Box2dAct-v0"),
    "an env that raises in `step` or `reset`": _env_raises,
    "an env that returns NaN or inf": _env_nan,
    "disk full (or a write error) while checkpointing": _disk_full,
    "a member's loss, gradients or parameters turn NaN/inf": _member_diverges,
    "Ctrl-C or SIGTERM during training": _interrupted,
}


class Context:
    def __init__(self, tmp: Path, capsys, monkeypatch) -> None:
        self.tmp, self.capsys, self.monkeypatch = tmp, capsys, monkeypatch
        self.made: set[str] = set()  # what a scenario may leave in tmp (a run directory it trains in)


@pytest.mark.parametrize("row", ROWS, ids=[r[0].strip("`")[:70] for r in ROWS])
def test_row(row, files, tmp_path, capsys, monkeypatch):
    cell, printed, _fix = row
    if "device=cuda" in cell and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)  # anything created by mistake would show up here
    ctx = Context(tmp_path, capsys, monkeypatch)
    command = _command(cell)
    if command is not None:
        argv = shlex.split(re.sub(r"<[^>]+>", lambda m: str(files[m.group(0)]), command))
        if argv[0] == "train" and not any(a.startswith(("hydra.run.dir=", "resume=")) for a in argv):
            argv.append(f"hydra.run.dir={tmp_path}/run")  # were the input accepted, the run would go here
        code, err, out = run_cli(argv, capsys, monkeypatch)
    else:
        code, err, out = SCENARIOS[cell](ctx)
    out = err + out
    if os.environ.get("EVORL_SHOW_ROWS"):  # a file to append what each row printed to (writing the README)
        with open(os.environ["EVORL_SHOW_ROWS"], "a") as fh:
            fh.write(f"ROW {cell}\n  exit {code}: {out.strip()}\n")
    expected_code, fragments = expectation(printed)
    assert code == expected_code, out
    assert "Traceback" not in out, out
    position = 0
    for fragment in fragments:
        found = out.find(fragment, position)
        assert found >= 0, f"{fragment!r} not printed (after position {position}):\n{out}"
        position = found + len(fragment)
    if expected_code == 2:  # one line on stderr (a run that failed midway has printed its tables to stdout)
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ctx.made), "bad input must not create anything"
    assert not (files["base"] / "PICKLE-RAN").exists() and not (files["base"] / "CODE-RAN").exists()
