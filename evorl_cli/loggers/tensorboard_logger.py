"""TensorBoard (optional extra `tensorboard`): the record's scalars under <run dir>/tensorboard,
against training env steps, so `tensorboard --logdir outputs/` shows every run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evorl_cli.loggers import backend, require

if TYPE_CHECKING:  # the record's types only: this module must import cheaply (see loggers/__init__)
    from evorl_cli.records.logger import LoggerContext
    from evorl_cli.records.record import GenerationRecord


@dataclass
class TensorBoardOptions:
    enabled: bool = False  # logger=tensorboard turns it on
    dir: str = "tensorboard"  # under the run directory


@backend("tensorboard", options=TensorBoardOptions, package="tensorboard",
         summary="TensorBoard: tensorboard --logdir outputs/")
class TensorBoardLogger:
    def __init__(self, ctx: LoggerContext) -> None:
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.tuned = sorted(ctx.config.hp_config)
        # A resumed run drops what the interrupted one logged after its checkpoint (purge_step).
        self.writer = SummaryWriter(str(ctx.run_dir / ctx.config.logger.tensorboard.dir),
                                    purge_step=ctx.start_env_steps if ctx.start_generation else None)

    def write(self, record: GenerationRecord) -> None:
        for tag, value in record.scalars(self.tuned).items():
            self.writer.add_scalar(tag, value, global_step=record.env_steps, walltime=None)
        self.writer.flush()  # so a running run shows up to its last generation

    def close(self) -> None:
        self.writer.close()
