"""Weights & Biases (optional extra `wandb`): the record's scalars, against training env steps.

`logger.wandb.mode=offline` (or WANDB_MODE=offline) needs no account and no network: the run is
written under <run dir>/wandb and can be uploaded later with `wandb sync`."""

from __future__ import annotations

from omegaconf import OmegaConf

from evorl_cli.errors import EvorlError
from evorl_cli.records.logger import LoggerContext, require
from evorl_cli.records.record import GenerationRecord


class WandbLogger:
    def __init__(self, ctx: LoggerContext) -> None:
        wandb = require("wandb", "wandb")
        cfg = ctx.config.logger.wandb
        self.tuned = sorted(ctx.config.hp_config)
        try:
            self.run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=str(ctx.run_dir),
                                  name=cfg.name or ctx.run_dir.name, group=cfg.group, tags=list(cfg.tags),
                                  config=OmegaConf.to_container(OmegaConf.structured(ctx.config)),
                                  settings=wandb.Settings(console="off", silent=True))
        except Exception as exc:  # no login, no network: say how to run without them
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EvorlError(f"wandb could not start ({reason}); log in with `wandb login`, or log offline: "
                             "logger.wandb.mode=offline") from None
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def write(self, record: GenerationRecord) -> None:
        self.run.log({"env_steps": record.env_steps, **record.scalars(self.tuned)})

    def close(self) -> None:
        self.run.finish()
