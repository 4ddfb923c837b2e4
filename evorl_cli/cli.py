"""`evorl <command> [hydra overrides]`: the only module that touches Hydra.

Each command is a Hydra application with its own primary config (`conf/<command>.yaml`), so
`--help`, `--cfg job`, `-m` multirun and every override work as Hydra users expect. Before Hydra
creates a run directory, the overrides are composed and validated once ("preflight"), so bad input
stops with one line and a non-zero exit, never a traceback or a half-made run directory.
"""

from __future__ import annotations

import math
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.markup import escape

from evorl_cli import hparams
from evorl_cli import loggers as logger_backends
from evorl_cli.config import build_train_config, register_schemas
from evorl_cli.errors import EnvFault, EvorlError

_PACKAGED = Path(__file__).parent / "conf"
CONF_DIR = str(_PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[1] / "conf")
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True)


def _run_dir_resolver(resume: str | None, default: str) -> str:
    """A resumed run keeps writing into its own directory."""
    if not resume:
        return default
    path = Path(resume)
    if path.is_file():
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return str(path)


def _hydra_subdir_resolver(resume: str | None, stamp: str) -> str:
    """A resumed run keeps the original `.hydra/` record and files the resume command beside it."""
    return f".hydra/resume_{stamp}" if resume else ".hydra"


OmegaConf.register_new_resolver("run_dir", _run_dir_resolver, replace=True)
OmegaConf.register_new_resolver("hydra_subdir", _hydra_subdir_resolver, replace=True)
# `evorl train --help` ends with the hyperparameter table (hparams.py) and the logger backends
# (evorl_cli/loggers/), both generated from their registries.
OmegaConf.register_new_resolver("evorl_train_help", lambda: hparams.help_text() + "\n" + logger_backends.help_text(),
                                replace=True)
register_schemas()


@contextmanager
def user_errors(resume_hint: str | None = None) -> Iterator[None]:
    """Turn EvorlError into one red line and exit code 2; Ctrl-C/SIGTERM into a resume hint and 130."""
    try:
        yield
    except EvorlError as exc:
        # escape: a message may hold brackets that are not markup, e.g. pip install "evorl-cli[box2d]"
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        hint = f"; resume with: evorl train resume={resume_hint}" if resume_hint else ""
        err_console.print(f"[bold yellow]interrupted[/]{hint}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_INTERRUPTED) from None


# --- commands ----------------------------------------------------------------------------------

def train_job(cfg: DictConfig) -> float:
    """`evorl train`: train a population; returns the confirmed best score (what Hydra sweepers
    optimise), NaN for a multirun job that failed (which the sweep records and goes past).

    It is Hydra's task function: launchers that run jobs in other processes (joblib, submitit,
    Ray) pickle it, which works because the module names it under its own name (the decorated
    `train_command` would be pickled by value, rich consoles and their locks included)."""
    from evorl_cli.launch import contained, sweep_threads
    from evorl_cli.sweeps import job_status
    from evorl_cli.train import resolve_target, train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with user_errors(resume_hint=str(run_dir)), contained(run_dir), job_status(run_dir) as status:
        resume = None
        if cfg.resume:
            resume, config = load_resume(cfg.resume, HydraConfig.get().overrides.task, cfg.trust_checkpoint)
        else:
            config = build_train_config(cfg)
        if config.torch_threads is None:  # jobs a launcher runs side by side share the cores
            config.torch_threads = sweep_threads()
        status.write("running", target=resolve_target(config))
        try:
            result = train(config, run_dir, console, resume=resume)
        except EnvFault as exc:  # the run's checkpoints are intact: say how to carry on
            raise EvorlError(f"{exc}; {run_dir / 'checkpoints' / 'latest.safetensors'} holds the run up to its "
                             f"last generation: once the env is fixed, evorl train resume={run_dir}") from None
        status.ended(result.reached_target, result.best_score, result.generations)
        return result.best_score
    return math.nan


train_command = hydra.main(version_base=None, config_path=CONF_DIR, config_name="train")(train_job)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="eval")
def eval_command(cfg: DictConfig) -> None:
    """`evorl eval ckpt=...`: mean return ± standard error of a checkpointed member on fresh episodes."""
    from evorl_cli.commands import run_eval

    with user_errors():
        run_eval(cfg, console)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="render")
def render_command(cfg: DictConfig) -> None:
    """`evorl render ckpt=...`: GIF of a checkpointed member playing."""
    from evorl_cli.render import run_render

    with user_errors():
        run_render(cfg, console)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="inspect")
def inspect_command(cfg: DictConfig) -> None:
    """`evorl inspect ckpt=...`: what a checkpoint holds."""
    from evorl_cli.commands import run_inspect

    with user_errors():
        run_inspect(cfg, console)


def summarize_command(args: list[str]) -> None:
    """`evorl summarize <dir>`: the jobs and seed-aggregate tables of a sweep directory (finished,
    running or interrupted) or of any directory holding runs, and its summary files rebuilt."""
    from evorl_cli.launch import EXIT_JOB_FAILED, print_summary
    from evorl_cli.sweeps import summarize

    if len(args) != 1 or args[0].startswith("-"):
        raise EvorlError("usage: evorl summarize <directory> (a sweep directory such as "
                         "outputs/multirun/<date>/<time>, or any directory holding runs)")
    root = Path(args[0])
    if not root.is_dir():
        raise EvorlError(f"{root}: no such directory; pass a sweep directory or a directory holding runs")
    summary = summarize(root)
    if not summary.jobs:
        raise EvorlError(f"{root}: no runs here (a run directory holds status.json, metrics.csv or "
                         ".hydra/overrides.yaml)")
    print_summary(summary, console)
    if summary.failed:  # as the sweep itself ended: the exit code says that a job failed
        raise SystemExit(EXIT_JOB_FAILED)


# Commands that take plain arguments rather than Hydra overrides.
PLAIN_COMMANDS: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "summarize": (summarize_command, "tables and summary files of a sweep (evorl summarize outputs/multirun/<run>)"),
}

@hydra.main(version_base=None, config_path=CONF_DIR, config_name="plot")
def plot_command(cfg: DictConfig) -> None:
    """`evorl plot run=...`: PNGs of a run (or of a multirun sweep), written into its directory."""
    from evorl_cli.records import plot

    with user_errors():
        written = plot(cfg.run)
        console.print(f"wrote {', '.join(p.name for p in written)} in {written[0].parent}", highlight=False)


COMMANDS: dict[str, tuple[Callable[[], None], str]] = {
    "train": (train_command, "train a population (evorl train env=acrobot)"),
    "eval": (eval_command, "evaluate a checkpoint (evorl eval ckpt=outputs/<run> episodes=20)"),
    "render": (render_command, "write a GIF of a trained member (evorl render ckpt=outputs/<run>)"),
    "inspect": (inspect_command, "show what a checkpoint holds (evorl inspect ckpt=outputs/<run>)"),
    "plot": (plot_command, "draw a run's plots into its directory (evorl plot run=outputs/<run>)"),
}

# Keys that may change when a run is resumed; anything else would make it a different run.
RESUMABLE_KEYS = ("max_steps", "device", "progress", "torch_threads", "resume", "trust_checkpoint", "evolution.",
                  "checkpoint.", "env.target", "mutation.", "hp_config.", "logger.", "plot.")
# Keys of the command line rather than of the run: a resume neither takes them from the checkpoint nor records them.
COMMAND_KEYS = ("resume", "trust_checkpoint")
# Keys that name the env a resume expects its checkpoint to hold; they change nothing (trust.py).
GIVEN_ENV_KEYS = ("env.id", "env.wrappers")


def _given_env(overrides: list[str]):
    """The env a resume's command line names (`env.id=...`, `env.wrappers=...`): not a change to the
    run, but what the user expects its checkpoint to hold (and code they allow it to run: trust.py)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evorl_cli.config import GivenEnv

    given = GivenEnv()
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.key_or_group in GIVEN_ENV_KEYS:
            setattr(given, override.key_or_group.removeprefix("env."), override.value())
    return given


def resumed_config(saved: dict, overrides: list[str], path: str = "the checkpoint"):
    """The checkpoint's config with the command line's (resumable) overrides applied on top; an
    env the command line names must be the checkpoint's own."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evorl_cli.config import EnvConfig, GivenEnv, to_dataclass
    from evorl_cli.trust import check_given_env

    cfg = OmegaConf.create({k: v for k, v in saved.items() if k != "trust_checkpoint"})  # a file cannot trust itself
    saved_id = cfg.env.id
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "env" and isinstance(override.value(), str):  # a preset names its env by its id
            named = f"env={override.value()}"
            preset_id = (_env_preset(override.value()) or {}).get("id")
            check_given_env(to_dataclass(EnvConfig, cfg.env), GivenEnv(id=preset_id), path, as_given=named)
            raise EvorlError(f"{named}: a resume keeps the env its checkpoint recorded ({saved_id}): drop {named} "
                             f"(env.id={saved_id} checks that the checkpoint holds it)")
        if not key.startswith(RESUMABLE_KEYS) and key not in GIVEN_ENV_KEYS:
            raise EvorlError(f"{key} cannot change when resuming (it would be another run); allowed: "
                             f"{', '.join(k.rstrip('.') for k in RESUMABLE_KEYS if k not in COMMAND_KEYS)}")
        if key not in COMMAND_KEYS and key not in GIVEN_ENV_KEYS:
            OmegaConf.update(cfg, key, override.value(), merge=True)
    config = build_train_config(cfg)
    check_given_env(config.env, _given_env(overrides), path)
    return config


def load_resume(path: str, overrides: list[str], trusted: bool):
    """The checkpoint a resume continues from and the run config it continues with (the saved one
    with the command line's resumable overrides). Its env may run code the checkpoint names only
    when `trusted` (trust_checkpoint=true) or given again on the command line: see trust.py."""
    from evorl_cli import checkpoint as ckpt
    from evorl_cli.trust import CLI_ALLOW, check_checkpoint_env

    resume = ckpt.load(path, prefer="latest")
    config = resumed_config(resume.meta["config"], overrides, str(resume.path))
    check_checkpoint_env(config.env, resume.path, trusted, CLI_ALLOW, _given_env(overrides))
    return resume, config


# --- preflight: validate overrides before Hydra makes anything ---------------------------------

# Hydra launcher and sweeper plugins (conf options) and the evorl-cli extra that installs each.
HYDRA_PLUGIN_EXTRAS = {"joblib": "joblib", "submitit_local": "submitit", "submitit_slurm": "submitit",
                       "ray": "ray", "ray_local": "ray", "optuna": "optuna"}


def _group_options(group: str) -> list[str]:
    """A config group's options, from its folder and from the ConfigStore (logger backends register
    theirs there). Hydra names none for an entry of a list (logger=[tensorboard,foo])."""
    from hydra.core.config_store import ConfigStore

    try:
        stored = ConfigStore.instance().list(group)
    except OSError:  # no such group in the store
        stored = []
    files = [f.name for f in (Path(CONF_DIR) / group).glob("*.yaml")]
    return sorted({name.removesuffix(".yaml") for name in [*files, *stored]})


def _compose_error(exc: Exception, command: str) -> str:
    """One line for Hydra's multi-line composition errors."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        options = ", ".join(exc.options or _group_options(group))
        hint = " (or set env.id=<any Gymnasium id>)" if group == "env" else ""
        if option in HYDRA_PLUGIN_EXTRAS and group in ("hydra/launcher", "hydra/sweeper"):
            return (f"{group}={option} needs Hydra's plugin for it: "
                    f'pip install "evorl-cli[{HYDRA_PLUGIN_EXTRAS[option]}]"')
        return f"unknown {group or 'config'} option '{option}': choose one of {options}{hint}"
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    first = text.splitlines()[0] if text else type(exc).__name__
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        reason = str(cause).splitlines()[0] if cause else ""
        if "not in" in reason or "Key '" in reason or "struct" in reason:
            return f"unknown config key '{key}': check its spelling (`evorl {command} --cfg job` lists every key)"
        return f"{key}: {reason}"
    if first.startswith("Error merging override"):
        key = first.removeprefix("Error merging override").strip()
        reason = str(cause).splitlines()[0] if cause else "invalid value"
        return f"{key}: {reason}"
    if first.startswith("Ambiguous value for argument"):  # a sweep's value list without -m
        return f"{first.rstrip('.')}: to run one job per value add -m (evorl {command} -m ...); for a list, write key=[a,b]"
    if "Could not find" in first:
        return first
    return first.rstrip(".") + f" (see `evorl {command} --help`)"


def _sweep_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The overrides of every job the command would run: with -m and Hydra's basic sweeper, every
    combination, expanded by Hydra's own BasicSweeper; with another sweeper (Optuna, ...), which
    picks its values as it goes, the overrides that are not sweeps (its picks are checked as each
    job starts, and a bad one fails that job only)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun:
        return [overrides]
    if any(o.key_or_group == "hydra/sweeper" and o.value() != "basic" for o in parsed):
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def _output_dir(cfg: DictConfig, multirun: bool) -> tuple[str, str]:
    """(key, resolved path) of the directory Hydra will create for this job: hydra.sweep.dir for a
    multirun, hydra.run.dir otherwise. `cfg` is composed with its `hydra` node."""
    from hydra.types import RunMode

    key = "sweep" if multirun or cfg.hydra.mode == RunMode.MULTIRUN else "run"
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} in the path resolves as in the real run
    try:
        return f"hydra.{key}.dir", str(cfg.hydra[key].dir)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EvorlError(f"hydra.{key}.dir: cannot resolve the output directory: {reason}") from None


def _env_preset(name: str) -> dict | None:
    """What `conf/env/<name>.yaml` sets under `env:`, or None for a preset found elsewhere."""
    path = Path(CONF_DIR) / "env" / f"{name}.yaml"
    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path).get("env", {}))


def _preflight_train(cfg: DictConfig, combo: list[str], multirun: bool) -> list[str]:
    """The train checks of one composed config (with its `hydra` node): values, env id, device,
    the output directory, then the env itself. Returns its warning lines."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evorl_cli.checks import check_net_fits, check_output_dir, inherited_preset_warning, probe_env
    from evorl_cli.envs.batch import check_env_id
    from evorl_cli.loggers import check_installed
    from evorl_cli.records.logger import disabled_logger_warning
    from evorl_cli.train import resolve_device

    out_key, out_dir = _output_dir(cfg, multirun)
    env_choice = cfg.hydra.runtime.choices.get("env")
    with open_dict(cfg):
        del cfg["hydra"]  # not part of the run's config schema
    if cfg.resume:
        if not Path(cfg.resume).exists():
            raise EvorlError(f"resume={cfg.resume}: no such run directory or checkpoint")
        load_resume(cfg.resume, combo, cfg.trust_checkpoint)  # a bad checkpoint or override stops here
        check_output_dir(out_key, out_dir)
        return []
    config = build_train_config(cfg)
    check_output_dir(out_key, out_dir)
    check_installed(config.logger)
    check_env_id(config.env.id, config.env.backend)
    resolve_device(config.device)
    check_net_fits(config.net, config.env.id, probe_env(config.env))
    overridden = {o.key_or_group for o in OverridesParser.create().parse_overrides(combo)}
    preset = _env_preset(env_choice) if env_choice else None
    warnings = [disabled_logger_warning(config, overridden),
                inherited_preset_warning(config.env, env_choice, preset, overridden) if preset is not None else None]
    return [w for w in warnings if w]


def _env_group_error(command: str, combo: list[str]) -> None:
    """eval and render play the env their checkpoint recorded: `env=<preset>` (train's group) names
    no env there, so say how to name the expected one (`env.id=`)."""
    for arg in combo:
        key, _, value = arg.partition("=")
        if key == "env":
            preset_id = (_env_preset(value) or {}).get("id")
            example = f"env.id={preset_id}" if preset_id else "env.id=<Gymnasium id>"
            raise EvorlError(f"{arg}: evorl {command} plays the env its checkpoint recorded; to make sure that "
                             f"is the env you expect, give its id: {example}")


def _preflight_checkpoint_command(command: str, cfg: DictConfig) -> None:
    """eval, render, inspect: the settings, the checkpoint path, the device and (render) where the GIF goes."""
    from evorl_cli.checks import check_output_dir
    from evorl_cli.config import SCHEMAS, to_dataclass, validate_playback
    from evorl_cli.train import resolve_device

    if OmegaConf.is_missing(cfg, "ckpt"):
        raise EvorlError(f"ckpt is required: evorl {command} ckpt=outputs/<date>/<run>")
    settings = to_dataclass(SCHEMAS[f"{command}_schema"], cfg)
    validate_playback(settings)
    if not Path(settings.ckpt).exists():
        raise EvorlError(f"ckpt={settings.ckpt}: no such file or directory; pass a run directory "
                         "under outputs/ or a .safetensors checkpoint")
    if hasattr(settings, "device"):
        resolve_device(settings.device)
    if getattr(settings, "out", None):
        check_output_dir("the directory of out", str(Path(settings.out).parent),
                         fix="set out to a writable path, e.g. out=member.gif")


def preflight(command: str, args: list[str]) -> list[str]:
    """Compose and validate `args` (every sweep combination with -m); raise EvorlError on bad input.

    Returns the warnings (each once) for input that is valid but probably not what was meant."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    warnings: list[str] = []
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return warnings  # Hydra's own flags (--help, --cfg, ...) do not run a job
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    multirun = len(overrides) < len(args)
    try:
        combos = _sweep_jobs(overrides, multirun)
    except Exception as exc:
        raise EvorlError(f"could not parse the overrides: {str(exc).splitlines()[0]}") from None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            for combo in combos:
                if command in ("eval", "render"):
                    _env_group_error(command, combo)
                try:
                    cfg = compose(config_name=command, overrides=combo, return_hydra_config=command == "train")
                except Exception as exc:
                    raise EvorlError(_compose_error(exc, command)) from None
                if command == "train":
                    warnings += [w for w in _preflight_train(cfg, combo, multirun) if w not in warnings]
                elif command == "plot":
                    if OmegaConf.is_missing(cfg, "run"):
                        raise EvorlError("run is required: evorl plot run=outputs/<date>/<run> (or evorl plot <run dir>)")
                else:
                    _preflight_checkpoint_command(command, cfg)
    finally:
        GlobalHydra.instance().clear()
    return warnings


def _usage() -> str:
    lines = ["usage: evorl <command> [key=value ...] [hydra flags]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in {**COMMANDS, **PLAIN_COMMANDS}.items()]
    lines += ["", "`evorl <command> --help` lists the config groups and keys; `--cfg job` prints the config."]
    return "\n".join(lines)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console entry point: dispatch the subcommand to its Hydra application."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        raise SystemExit(0 if args else EXIT_USER_ERROR)
    command, rest = args[0], args[1:]
    if command == "plot" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"run={rest[0]}", *rest[1:]]  # `evorl plot <run dir>`: the positional form
    if command in PLAIN_COMMANDS:
        with user_errors():
            PLAIN_COMMANDS[command][0](rest)
        return
    if command not in COMMANDS:
        err_console.print(f"[bold red]error:[/] unknown command '{command}'; use one of: "
                          f"{', '.join([*COMMANDS, *PLAIN_COMMANDS])}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_USER_ERROR)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM ends a run like Ctrl-C: cleanly
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`&`)
    with user_errors():
        for warning in preflight(command, rest):
            err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    sys.argv = [f"evorl {command}", *rest]  # Hydra reads its overrides from sys.argv
    COMMANDS[command][0]()


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy of it: launchers pickle the train task by
    # reference to evorl_cli.cli (a function of `__main__` would be pickled by value).
    from evorl_cli.cli import main as imported_main

    imported_main()
