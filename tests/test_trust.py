"""A checkpoint cannot make evorl run code: edited checkpoints that name functions are refused
(the functions leave marker files, which must never appear), unless the user trusts the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from safetensors.torch import save_file

import evorl_cli
from evorl_cli import checkpoint
from evorl_cli.agent import load_member
from evorl_cli.checkpoint import META_KEY
from evorl_cli.cli import load_resume
from evorl_cli.config import GivenEnv, build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.train import train

TESTS = Path(__file__).parent
CLI = [sys.executable, "-m", "evorl_cli.cli"]
TINY = {
    "seed": 0, "max_steps": 128, "device": "cpu", "progress": False, "population": {"size": 2},
    "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "gymnasium"},
    "algo": {"rollout_steps": 32, "batch_size": 32},
    "evolution": {"evo_steps": 64, "selection_episodes": 2, "confirm_episodes": 4, "eval_max_steps": 20},
    "hp_config": {},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trust") / "run"
    train(build_train_config(TINY), run_dir, Console(quiet=True))
    return run_dir


def edited(run: Path, dst_dir: Path, env_changes: dict, **config_changes) -> Path:
    """A copy of the run whose checkpoints record `env_changes` in their config's env (as an edited
    file from elsewhere would)."""
    folder = dst_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("latest", "best"):
        ckpt = checkpoint.load(run / "checkpoints" / f"{name}.safetensors")
        meta = json.loads(json.dumps(ckpt.meta))
        meta["config"]["env"].update(env_changes)
        meta["config"].update(config_changes)
        save_file(ckpt.tensors, str(folder / f"{name}.safetensors"), metadata={META_KEY: json.dumps(meta)})
    return dst_dir


def hostile_edits(marker: Path) -> dict[str, tuple[dict, str]]:
    """(env changes, the name the error must show) per way of naming code."""
    m = str(marker)
    partial = {"_target_": "hostile.identity", "_partial_": True, "path": m}
    return {
        "wrapper": ({"wrappers": [{"_target_": "hostile.touch_marker", "path": m}]}, "hostile.touch_marker"),
        "os.remove": ({"wrappers": [{"_target_": "os.remove", "path": m}]}, "os.remove"),
        "nested argument": ({"wrappers": [{"_target_": "gymnasium.wrappers.TransformReward",
                                           "func": partial}]}, "env.wrappers[0].func._target_=hostile.identity"),
        "_args_": ({"wrappers": [{"_target_": "gymnasium.wrappers.TimeLimit",
                                  "_args_": [{"_target_": "hostile.touch_marker", "path": m}]}]},
                   "env.wrappers[0]._args_[0]._target_=hostile.touch_marker"),
        "second wrapper": ({"wrappers": [{"_target_": "gymnasium.wrappers.ClipReward", "min_reward": -1},
                                         {"_target_": "hostile.touch_marker", "path": m}]},
                           "env.wrappers[1]._target_=hostile.touch_marker"),
        # a longer path under gymnasium.wrappers reaches the modules it imports
        "disguised": ({"wrappers": [{"_target_": "gymnasium.wrappers.importlib.import_module",
                                     "name": "hostile"}]}, "gymnasium.wrappers.importlib.import_module"),
        "RecordVideo": ({"wrappers": [{"_target_": "gymnasium.wrappers.RecordVideo", "video_folder": m}]},
                        "gymnasium.wrappers.RecordVideo"),
        "module:Env id": ({"id": "hostile_env:Hostile-v0"}, "env.id=hostile_env:Hostile-v0 (imports hostile_env)"),
    }


EDITS = list(hostile_edits(Path("x")))


@pytest.mark.parametrize("edit", EDITS)
def test_a_checkpoint_naming_code_is_refused_and_the_code_never_runs(run, tmp_path, monkeypatch, edit):
    marker = tmp_path / "RAN"
    monkeypatch.setenv("EVORL_TEST_MARKER", str(marker))  # hostile_env touches it when imported
    monkeypatch.delitem(sys.modules, "hostile_env", raising=False)
    changes, name = hostile_edits(marker)[edit]
    bad = edited(run, tmp_path / "bad", changes)
    cli_allow = f"add trust_checkpoint=true or give the same {'env.id' if 'id' in changes else 'env.wrappers'} again"
    attempts = [
        (lambda: evorl_cli.load(bad), "pass trust=True to evorl_cli.load"),
        (lambda: evorl_cli.load(bad, member=1), "pass trust=True to evorl_cli.load"),
        (lambda: load_member(bad), "add trust_checkpoint=true"),
        (lambda: load_member(bad, given=GivenEnv()), cli_allow),  # evorl eval and render
        (lambda: load_resume(str(bad), [], trusted=False), cli_allow),  # evorl train resume=
    ]
    for attempt, allow in attempts:
        with pytest.raises(EvorlError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message and name in message and message.endswith(allow), message
        assert str(bad / "checkpoints") in message
    assert not marker.exists(), "loading the checkpoint ran the code it names"
    assert "hostile_env" not in sys.modules
    assert not (tmp_path / "bad" / "x").exists()


def test_a_checkpoint_cannot_trust_itself(run, tmp_path):
    marker = tmp_path / "RAN"
    bad = edited(run, tmp_path / "bad", {"wrappers": [{"_target_": "hostile.touch_marker", "path": str(marker)}]},
                 trust_checkpoint=True)
    with pytest.raises(EvorlError, match="add trust_checkpoint=true"):
        load_resume(str(bad), [], trusted=False)
    assert not marker.exists()


def test_trusting_the_checkpoint_runs_its_code(run, tmp_path, monkeypatch):
    """The control: the same payloads are live, and trust lets them run."""
    marker = tmp_path / "RAN"
    good = edited(run, tmp_path / "trusted", {"wrappers": [{"_target_": "hostile.touch_marker",
                                                            "path": str(marker)}]})
    agent = evorl_cli.load(good, trust=True)
    assert marker.exists()
    assert agent.act([0.0, 0.0, 0.0, 0.0])[0] in (0, 1)

    env_marker = tmp_path / "IMPORTED"
    monkeypatch.setenv("EVORL_TEST_MARKER", str(env_marker))
    monkeypatch.delitem(sys.modules, "hostile_env", raising=False)
    _, config = load_resume(str(edited(run, tmp_path / "env", {"id": "hostile_env:Hostile-v0"})), [], trusted=True)
    EnvBatch(config.env, 1).close()
    assert env_marker.exists()


def test_gymnasiums_own_wrappers_need_no_trust(run, tmp_path):
    wrappers = [{"_target_": "gymnasium.wrappers.TimeLimit", "max_episode_steps": 50},
                {"_target_": "gymnasium.wrappers.TransformReward",
                 "func": {"_target_": "gymnasium.wrappers.ClipReward", "_partial_": True}}]
    path = edited(run, tmp_path / "ok", {"wrappers": wrappers[:1]})
    assert evorl_cli.load(path).act([0.0, 0.0, 0.0, 0.0])[0] in (0, 1)
    from evorl_cli.trust import named_code

    assert named_code(build_train_config({**TINY, "env": {**TINY["env"], "wrappers": wrappers}}).env) == []


def _cli(*args, cwd: Path, marker: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "EVORL_TEST_MARKER": str(marker), "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_refuses_and_names_the_flag(run, tmp_path):
    """eval and resume, in a subprocess where `hostile` is importable: exit 2, one line, nothing ran."""
    marker = tmp_path / "RAN"
    bad = edited(run, tmp_path / "bad", {"wrappers": [{"_target_": "hostile.touch_marker", "path": str(marker)}]})
    before = sorted(p.relative_to(bad) for p in bad.rglob("*"))
    for args in (["eval", f"ckpt={bad}", "episodes=2"], ["render", f"ckpt={bad}", f"out={tmp_path}/x.gif"],
                 ["train", f"resume={bad}", "max_steps=256"]):
        proc = _cli(*args, cwd=tmp_path, marker=marker)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "hostile.touch_marker" in lines[0], proc.stderr
        assert lines[0].endswith("if you trust where this file came from, add trust_checkpoint=true or give the same "
                                 "env.wrappers again"), lines[0]
        assert not marker.exists()
    assert sorted(p.relative_to(bad) for p in bad.rglob("*")) == before, "a refused resume must not write"
    proc = _cli("eval", f"ckpt={bad}", "episodes=2", "trust_checkpoint=true", cwd=tmp_path, marker=marker)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists() and "mean return" in proc.stdout


def test_trust_checkpoint_without_resume_is_refused():
    with pytest.raises(EvorlError, match="trust_checkpoint=true only applies to resume="):
        build_train_config({**TINY, "trust_checkpoint": True})


def test_giving_the_code_again_on_the_command_line_runs_it(run, tmp_path):
    """The same wrapper list, or the same module:Env id, given again lets eval and resume run that code
    (the marker appears); a list that differs in any argument, or giving only the id while the
    wrappers name code, is refused and runs nothing."""
    marker = tmp_path / "RAN"
    wrapper = f"env.wrappers=[{{_target_:hostile.touch_marker,path:{marker}}}]"
    bad = edited(run, tmp_path / "bad", {"wrappers": [{"_target_": "hostile.touch_marker", "path": str(marker)}]})
    for args, shown in ((["eval", f"ckpt={bad}", "episodes=2", wrapper.replace("RAN", "ELSE")], "not the env.wrappers="),
                        (["eval", f"ckpt={bad}", "episodes=2", "env.id=CartPole-v1"], "give the same env.wrappers again"),
                        (["train", f"resume={bad}", "max_steps=256", wrapper.replace("}]", ",extra:1}]")],
                         "not the env.wrappers=")):
        proc = _cli(*args, cwd=tmp_path, marker=marker)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and shown in lines[0], proc.stderr
        assert not marker.exists() and not (tmp_path / "ELSE").exists()
    proc = _cli("eval", f"ckpt={bad}", "episodes=2", "env.id=CartPole-v1", wrapper, cwd=tmp_path, marker=marker)
    assert proc.returncode == 0 and "mean return" in proc.stdout, proc.stderr
    assert marker.exists()

    env_marker = tmp_path / "IMPORTED"
    by_id = edited(run, tmp_path / "by_id", {"id": "hostile_env:Hostile-v0"})
    proc = _cli("eval", f"ckpt={by_id}", "episodes=2", cwd=tmp_path, marker=env_marker)
    assert proc.returncode == 2 and "give the same env.id again" in proc.stderr and not env_marker.exists()
    proc = _cli("train", f"resume={by_id}", "max_steps=384", "env.id=hostile_env:Hostile-v0", cwd=tmp_path,
                marker=env_marker)
    assert proc.returncode == 0, proc.stderr
    assert env_marker.exists()
    assert checkpoint.load(by_id, prefer="latest").meta["state"]["generation"] == 3  # it resumed and trained on


def test_a_checkpoint_of_another_env_than_the_one_given_is_refused(run):
    """eval and render (load_member) and resume name both envs; the checkpoint's own env is a check
    that passes, and the member then acts as without it."""
    for attempt, named in ((lambda: load_member(run, given=GivenEnv(id="Acrobot-v1")), "(env.id=Acrobot-v1)"),
                           (lambda: load_resume(str(run), ["env.id=Acrobot-v1"], trusted=False), "(env.id=Acrobot-v1)"),
                           (lambda: load_resume(str(run), ["env=acrobot"], trusted=False), "(env=acrobot)")):
        with pytest.raises(EvorlError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message and f"holds a run on CartPole-v1, not on Acrobot-v1 {named}" in message, message
    load_member(run, given=GivenEnv(id="CartPole-v1", wrappers=[]))  # the run's own env passes
