"""The logger interface and the fan-out that feeds every enabled backend one record.

A backend is one class with `write(record)` and `close()`, built from a `LoggerContext`; register
it in `BACKENDS` under its config name (`logger.<name>.enabled`). Its third-party package is
imported only when it is enabled, so a missing one costs a user nothing until asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rich.console import Console

from evorl_cli.config import TrainConfig
from evorl_cli.errors import EvorlError
from evorl_cli.records.record import GenerationRecord


class Logger(Protocol):
    def write(self, record: GenerationRecord) -> None:
        """Take one generation's complete record."""

    def close(self) -> None:
        """Flush and release whatever the backend holds (called once, at the end of the run)."""


@dataclass
class LoggerContext:
    """What a backend may need to start: the run, its directory, the terminal and where it resumes."""

    config: TrainConfig
    run_dir: Path
    console: Console
    start_generation: int = 0  # > 0 when the run resumes: records from here on are written again
    start_env_steps: int = 0


# Optional backends: config name -> ("module:Class", the package it needs, which is also its extra's
# name). csv and the table are always on.
BACKENDS = {
    "tensorboard": ("evorl_cli.records.tensorboard_logger:TensorBoardLogger", "tensorboard"),
    "wandb": ("evorl_cli.records.wandb_logger:WandbLogger", "wandb"),
}


def _missing(package: str, extra: str) -> EvorlError:
    return EvorlError(f"logger {extra} needs the {package} package: pip install \"evorl-cli[{extra}]\" "
                      f"(or turn it off: logger.{extra}.enabled=false)")


def require(module: str, extra: str):
    """Import an optional dependency, or stop with the one line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(module.split(".")[0], extra) from None


def check_backends(config: TrainConfig) -> None:
    """Before a run starts (the CLI's preflight): every enabled backend's package is installed."""
    for name, (_, package) in BACKENDS.items():
        if getattr(config.logger, name).enabled:
            try:
                found = importlib.util.find_spec(package) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise _missing(package, name)


def disabled_logger_warning(config: TrainConfig, overridden: set[str]) -> str | None:
    """One line when the command line set options of a backend that is off (they would go unused);
    None otherwise. `overridden`: the command line's keys."""
    off = sorted({parts[1] for parts in (key.split(".") for key in overridden)
                  if len(parts) > 2 and parts[0] == "logger" and parts[1] in BACKENDS and parts[2] != "enabled"
                  and not getattr(config.logger, parts[1]).enabled})
    if not off:
        return None
    names = ", ".join(f"logger.{name}.*" for name in off)
    turn_on = " ".join(f"logger.{name}.enabled=true" for name in off)  # keeps whatever else is on
    return f"{names} set, but {'that logger is' if len(off) == 1 else 'those loggers are'} off, so unused: add {turn_on}"


class Loggers:
    """Every logger of a run: `write(record)` is the training loop's one reporting call."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    @classmethod
    def for_run(cls, ctx: LoggerContext) -> "Loggers":
        from evorl_cli.records.csv_logger import CsvLogger
        from evorl_cli.records.table import TableLogger

        loggers: list[Logger] = [CsvLogger(ctx), TableLogger(ctx)]
        for name, (target, _) in BACKENDS.items():
            if getattr(ctx.config.logger, name).enabled:
                module, _, attr = target.partition(":")
                loggers.append(getattr(importlib.import_module(module), attr)(ctx))
        return cls(loggers)

    def write(self, record: GenerationRecord) -> None:
        for logger in self.loggers:
            logger.write(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    def __enter__(self) -> "Loggers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
