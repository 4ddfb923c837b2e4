"""Which code a checkpoint's recorded config would make evorl import and call, and whether the user allowed it.

A checkpoint is data, but the run config it records rebuilds the env for eval, render, resume and
`evorl_cli.load`: each entry of `env.wrappers` is a Hydra `_target_` spec that `instantiate` imports
and calls (nested specs in its arguments and `_args_` too, `_partial_` ones later), and an `env.id`
of the form `module:Env-v0` makes `gymnasium.make` import `module`. A file from elsewhere could name
any function there (`os.remove`, ...). So before an env is built from a checkpoint, every name it
would import is checked: Gymnasium's own wrappers pass, anything else only when the user allows it
(`trust_checkpoint=true` on the command line, `evorl_cli.load(..., trust=True)` in Python).

A config the user composes for `evorl train` is not checked: the command line is the user's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from evorl_cli.config import EnvConfig
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


def named_code(env: EnvConfig) -> list[str]:
    """What building `env` would import or call beyond Gymnasium's own wrappers, one entry per name,
    e.g. 'env.wrappers[0]._target_=mypkg.Scale' or 'env.id=mymod:Env-v0 (imports mymod)'."""
    found = []
    if ":" in env.id:
        found.append(f"env.id={env.id} (imports {env.id.split(':', 1)[0]})")
    for i, spec in enumerate(env.wrappers):
        for where, target in _targets(spec, f"env.wrappers[{i}]"):
            if not gymnasium_wrapper(target):
                found.append(f"{where}={target}")
    return found


def check_checkpoint_env(env: EnvConfig, path: Path | str, trusted: bool, allow: str) -> None:
    """Refuse, in one line naming every piece of code and `allow` (how to permit it), an env recorded
    in checkpoint `path` that would run code other than Gymnasium's wrappers; pass if `trusted`."""
    found = named_code(env)
    if found and not trusted:
        raise EvorlError(f"{path}: rebuilding its env would import and run code the checkpoint names "
                         f"({'; '.join(found)}); evorl runs no code from a checkpoint unless you allow it: "
                         f"if you trust where this file came from, {allow}")
