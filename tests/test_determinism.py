"""The same config and seed give the same run; another seed gives another run."""

from __future__ import annotations

import csv

from helpers import tiny_config
from rich.console import Console

from evorl_cli import checkpoint as ckpt
from evorl_cli.train import train


def _run(tmp_path, name, seed):
    config = tiny_config(seed=seed, **{"mutation.no_mutation": 0.2})  # every mutation kind gets drawn
    run_dir = tmp_path / name
    train(config, run_dir, Console(quiet=True))
    with open(run_dir / "metrics.csv") as fh:
        rows = [{k: v for k, v in row.items() if k not in ("wall_time", "eval_time", "train_steps_per_s")} for row in csv.DictReader(fh)]
    return rows, ckpt.load(run_dir, prefer="latest").tensors["params"]


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    rows_a, params_a = _run(tmp_path, "a", seed=3)
    rows_b, params_b = _run(tmp_path, "b", seed=3)
    rows_c, params_c = _run(tmp_path, "c", seed=4)
    assert len(rows_a) == 2 * 4  # 2 members x 4 generations
    assert rows_a == rows_b
    assert params_a.equal(params_b)
    assert not params_a.equal(params_c)
