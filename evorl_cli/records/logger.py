"""The logger interface and the fan-out that feeds every enabled backend one record.

metrics.csv and the terminal table are always on. Optional backends (TensorBoard, W&B, ...) are one
module each in `evorl_cli/loggers/`, which registers itself there: a class with `write(record)` and
`close()`, built from a `LoggerContext`, and an options dataclass that becomes `logger.<name>.*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rich.console import Console

from evorl_cli.config import TrainConfig
from evorl_cli.loggers import BACKENDS, enabled
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
        loggers += [backend.logger(ctx) for backend in enabled(ctx.config.logger)]
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
