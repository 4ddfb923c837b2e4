"""Which code a checkpoint's recorded config would make evorl import and call, and whether the user allowed it.

A checkpoint is data, but the run config it records rebuilds the env for eval, render, resume and
`evorl_cli.load`: each entry of `env.wrappers` is a Hydra `_target_` spec that `instantiate` imports
and calls (nested specs in its arguments and `_args_` too, `_partial_` ones later), and an `env.id`
of the form `module:Env-v0` makes `gymnasium.make` import `module`. A file from elsewhere could name
any function there (`os.remove`, ...). So before an env is built from a checkpoint, every name it
would import is checked: Gymnasium's own wrappers pass, anything else only when the user allows it
(`trust_checkpoint=true` on the command line, `evorl_cli.load(..., trust=True)` in Python), or
gives it again on the command line: the same `env.id=mymod:Env-v0`, the same `env.wrappers=[...]`
(exactly as recorded, arguments included), as one would retype the training command.

The env a user gives is also what they expect the checkpoint to hold: a checkpoint of another env
is refused (`check_given_env`), so `evorl eval ckpt=... env.id=CartPole-v1` never plays Acrobot.

A config the user composes for `evorl train` is not checked: the command line is the user's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from evorl_cli.config import EnvConfig, GivenEnv
from evorl_cli.errors import EvorlError

CLI_ALLOW = "add trust_checkpoint=true"
PYTHON_ALLOW = "pass trust=True to evorl_cli.load"

# Gymnasium wrappers that act beyond the env they wrap: files written where the spec says, a window.
NOT_BY_DEFAULT = {"RecordVideo", "HumanRendering"}


def _targets(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(where, target) for every `_target_` in a wrapper spec, at any depth (arguments, `_args_`)."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield f"{where}._target_", node["_target_"]
        for key, value in node.items():
            if key != "_target_":
                yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def gymnasium_wrapper(target: Any) -> bool:
    """`gymnasium.wrappers.<Name>` for a wrapper Gymnasium exports, exactly: longer paths could reach
    the modules that package imports (`gymnasium.wrappers.importlib.import_module`)."""
    import gymnasium.wrappers

    if not isinstance(target, str):
        return False
    package, _, name = target.rpartition(".")
    return (package == "gymnasium.wrappers" and name in gymnasium.wrappers.__all__ and name != "vector"
            and name not in NOT_BY_DEFAULT)


def named_code(env: EnvConfig, given: GivenEnv | None = None) -> list[str]:
    """What building `env` would import or call beyond Gymnasium's own wrappers, one entry per name,
    e.g. 'env.wrappers[0]._target_=mypkg.Scale' or 'env.id=mymod:Env-v0 (imports mymod)', less
    what the user gave again (`given`: the same id, the same wrapper list)."""
    given = given or GivenEnv()
    found = []
    if ":" in env.id and given.id != env.id:
        found.append(f"env.id={env.id} (imports {env.id.split(':', 1)[0]})")
    if given.wrappers != env.wrappers:
        for i, spec in enumerate(env.wrappers):
            for where, target in _targets(spec, f"env.wrappers[{i}]"):
                if not gymnasium_wrapper(target):
                    found.append(f"{where}={target}")
    return found


def check_given_env(env: EnvConfig, given: GivenEnv, path: Path | str, as_given: str | None = None) -> None:
    """Refuse, in one line naming both, a checkpoint `path` whose recorded `env` is not the one the
    user gave (each of `given`'s keys that is set must equal the recorded one). `as_given`: how the
    command line named the id, when not as `env.id=` (a resume's `env=<preset>`)."""
    if given.id is not None and given.id != env.id:
        named = as_given or f"env.id={given.id}"
        raise EvorlError(f"{path} holds a run on {env.id}, not on {given.id} ({named}): pass a checkpoint of a "
                         f"run on {given.id}, or drop {named} to use this one's {env.id}")
    if given.wrappers is not None and given.wrappers != env.wrappers:
        raise EvorlError(f"{path} holds a run with env.wrappers={env.wrappers}, not the env.wrappers="
                         f"{given.wrappers} given: pass a checkpoint of a run with those wrappers, or drop "
                         "env.wrappers to use this one's")


def check_checkpoint_env(env: EnvConfig, path: Path | str, trusted: bool, allow: str,
                         given: GivenEnv | None = None) -> None:
    """Refuse, in one line, an env recorded in checkpoint `path` that is not the one the user gave,
    or that would run code other than Gymnasium's wrappers and what the user gave again (naming
    every piece of code and how to permit it: `allow`, and with `given` (a command line that can
    give env.id / env.wrappers) giving them again); pass the code if `trusted`."""
    if given is not None:
        check_given_env(env, given, path)
    found = named_code(env, given)
    if found and not trusted:
        keys = [key for key, named in (("env.id", any(f.startswith("env.id=") for f in found)),
                                       ("env.wrappers", any(f.startswith("env.wrappers") for f in found))) if named]
        again = f" or give the same {' and '.join(keys)} again" if given is not None else ""
        raise EvorlError(f"{path}: rebuilding its env would import and run code the checkpoint names "
                         f"({'; '.join(found)}); evorl runs no code from a checkpoint unless you allow it: "
                         f"if you trust where this file came from, {allow}{again}")
