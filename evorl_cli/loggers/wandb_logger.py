"""Weights & Biases (optional extra `wandb`): the record's scalars, against training env steps.

`logger.wandb.mode=offline` (or WANDB_MODE=offline) needs no account and no network: the run is
written under <run dir>/wandb and can be uploaded later with `wandb sync`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

from omegaconf import OmegaConf

from evorl_cli.errors import EvorlError
from evorl_cli.loggers import backend, require

if TYPE_CHECKING:  # the record's types only: this module must import cheaply (see loggers/__init__)
    from evorl_cli.records.logger import LoggerContext
    from evorl_cli.records.record import GenerationRecord

MODES = (None, "online", "offline", "disabled")


@dataclass
class WandbOptions:
    enabled: bool = False  # logger=wandb turns it on
    project: str = "evorl"
    entity: Optional[str] = None
    mode: Optional[str] = None  # online | offline | disabled; None: wandb's default (WANDB_MODE, else online)
    name: Optional[str] = None  # None: the run directory's name
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)

    def check(self) -> Optional[str]:
        """What is wrong with these options (the key and the fix), or None."""
        if self.mode not in MODES:
            return f"mode={self.mode}: use online, offline, disabled or null"
        return None


@backend("wandb", options=WandbOptions, package="wandb",
         summary="Weights & Biases (logger.wandb.mode=offline: no account)")
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
