"""The logger extension point: a backend is one new module in evorl_cli/loggers/, nothing else.

The main test copies the package, drops a single file into its loggers/ folder and trains with
it from the command line: the new backend's options are type-checked keys, `logger=<name>`
switches it on, `--help` lists it, and it receives every generation's record."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import evorl_cli
from evorl_cli.errors import EvorlError
from evorl_cli.loggers import check_options, discover
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]

# The whole of a new backend: options, registration, and a logger. It writes one JSON line per
# generation, so the test can compare what it was fed with metrics.csv.
JSONL_BACKEND = '''
"""JSON lines: one object per generation."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from evorl_cli.loggers import backend


@dataclass
class JsonlOptions:
    enabled: bool = False
    path: str = "records.jsonl"
    indent: Optional[int] = None

    def check(self) -> Optional[str]:
        return None if self.path.endswith(".jsonl") else f"path={self.path}: must end in .jsonl"


@backend("jsonl", options=JsonlOptions, package="json", summary="one JSON object per generation")
class JsonlLogger:
    def __init__(self, ctx) -> None:
        self.file = open(ctx.run_dir / ctx.config.logger.jsonl.path, "w")

    def write(self, record) -> None:
        self.file.write(json.dumps({"generation": record.generation, "env_steps": record.env_steps,
                                    "fitness": [float(f) for f in record.fitness]}) + "\\n")

    def close(self) -> None:
        self.file.close()
'''


@pytest.fixture(scope="module")
def package_with_new_backend(tmp_path_factory) -> Path:
    """A copy of evorl_cli whose loggers/ folder holds one extra file, jsonl_logger.py."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(Path(evorl_cli.__file__).parent, root / "evorl_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if not (root / "evorl_cli" / "conf").exists():  # a source checkout keeps conf/ beside the package
        (root / "conf").symlink_to(REPO / "conf")
    (root / "evorl_cli" / "loggers" / "jsonl_logger.py").write_text(JSONL_BACKEND)
    return root


def _evorl(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "evorl_cli.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=root)


def test_one_new_file_adds_a_backend_that_gets_every_record(package_with_new_backend, tmp_path):
    run_dir = tmp_path / "run"
    proc = _evorl(package_with_new_backend, "train", "env=cartpole", "population.size=2", "env.num_envs=2",
                  "algo.rollout_steps=32", "algo.batch_size=32", "evolution.evo_steps=64",
                  "evolution.selection_episodes=2", "evolution.confirm_episodes=4", "max_steps=512",
                  "device=cpu", "progress=false", "plot.on_finish=false", "logger=jsonl",
                  "logger.jsonl.path=gens.jsonl", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    fed = [json.loads(line) for line in (run_dir / "gens.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    generations = sorted({int(r["generation"]) for r in rows})
    assert [g["generation"] for g in fed] == generations and len(generations) >= 2
    for g in fed:  # the same record metrics.csv was written from
        mine = [r for r in rows if int(r["generation"]) == g["generation"]]
        assert g["fitness"] == pytest.approx([float(r["fitness"]) for r in mine], rel=1e-6)
        assert {int(r["env_steps"]) for r in mine} == {g["env_steps"]}


def test_a_new_backends_options_are_checked_and_listed(package_with_new_backend, tmp_path):
    help_page = _evorl(package_with_new_backend, "train", "--help").stdout
    assert "jsonl" in help_page.split("== Logger backends ==")[1] and "logger: csv, jsonl, tensorboard, wandb" in help_page
    typo = _evorl(package_with_new_backend, "train", "logger=jsonl", "logger.jsonl.pth=x.jsonl",
                  f"hydra.run.dir={tmp_path / 'typo'}")
    assert typo.returncode != 0 and "logger.jsonl.pth" in typo.stderr and "Traceback" not in typo.stderr
    bad = _evorl(package_with_new_backend, "train", "logger=jsonl", "logger.jsonl.path=gens.txt",
                 f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode != 0 and bad.stderr.strip().endswith("logger.jsonl.path=gens.txt: must end in .jsonl")
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_the_built_in_backends_register_themselves():
    from evorl_cli import config

    assert {"tensorboard", "wandb"} <= set(discover())
    # The run config's schema (built once, when evorl starts) holds their options.
    assert {"tensorboard", "wandb"} <= set(config.LoggerConfig.__dataclass_fields__)
    assert tiny_config().logger.tensorboard.dir == "tensorboard"


def test_the_logger_schema_pickles_by_reference():
    """Launchers (joblib, submitit, Ray) pickle the run config to their workers: the schema must
    arrive as the worker's own `config.LoggerConfig`, not as a copy that OmegaConf cannot merge."""
    import pickle

    from evorl_cli import config

    assert pickle.loads(pickle.dumps(config.LoggerConfig)) is config.LoggerConfig
    logger = tiny_config(**{"logger.tensorboard.enabled": True}).logger
    assert pickle.loads(pickle.dumps(logger)) == logger


def test_option_checks_run_for_enabled_backends_only():
    off = tiny_config(**{"logger.wandb.mode": "sideways"}).logger  # off: the CLI warns that it is unused
    assert check_options(off) is None
    with pytest.raises(EvorlError, match=r"^logger\.wandb\.mode=sideways: use online, offline, disabled or null$"):
        tiny_config(**{"logger.wandb.enabled": True, "logger.wandb.mode": "sideways"})
