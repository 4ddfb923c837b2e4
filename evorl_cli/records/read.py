"""Reading a run's records back: what the csv logger wrote, so finished, running and interrupted
runs read alike."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from evorl_cli.errors import EvorlError
from evorl_cli.records.csv_logger import FILENAME


def metrics_path(run: str | Path) -> Path:
    """The metrics.csv of a run directory (or the file itself); EvorlError if there is none."""
    path = Path(run)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise EvorlError(f"{run}: no {FILENAME} here; pass a run directory written by `evorl train` "
                         "(outputs/<date>/<run>)")
    return path


def _value(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(run: str | Path) -> list[dict[str, Any]]:
    """The run's metrics.csv as one dict per member per generation, numbers as int or float, blank
    cells (no confirmation that generation, columns an older version did not write) as None."""
    with open(metrics_path(run), newline="") as fh:
        return [{k: _value(v or "") for k, v in row.items() if k is not None} for row in csv.DictReader(fh)]


def read_run(run: str | Path):
    """The run's records, one row per member per generation (columns: see `CsvLogger`): a pandas
    DataFrame if pandas is installed, else a list of dicts."""
    try:
        import pandas as pd
    except ImportError:
        return read_rows(run)
    return pd.read_csv(metrics_path(run))
