"""Optional logger backends (TensorBoard, W&B, ...): each is one module in this package.

A backend module declares its options as a dataclass with an `enabled: bool = False` field, and
registers its logger class with `@backend(name, options=..., package=...)`. That is all: the
package is scanned when evorl starts, so the module's options become `logger.<name>.*` in the run
config (type-checked like every other key), `logger=<name>` switches it on, `--help` lists it, the
preflight checks its package is installed, and the training loop feeds it every generation's record.

A backend module must be cheap to import: import its third-party package inside the logger's
`__init__` (with `require`), so a user without it pays nothing until they ask for it. This module
imports nothing of evorl's beyond the error type, so `config.py` can build its schema from it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import Any, Callable, Optional

from evorl_cli.errors import EvorlError


@dataclass(frozen=True)
class Backend:
    """One registered backend: its config name, options dataclass, the package it needs (also the
    name of its pip extra) and the logger class, built with the run's `LoggerContext`."""

    name: str
    options: type
    package: str
    logger: Callable[..., Any]
    summary: str = ""  # a few words for `evorl train --help` (it prints at 80 columns)


BACKENDS: dict[str, Backend] = {}


def backend(name: str, *, options: type, package: str, summary: str = "") -> Callable[[type], type]:
    """Class decorator: register a logger class (`write(record)`, `close()`, built from a
    `LoggerContext`) as backend `name`, configured by the dataclass `options`."""
    if not (is_dataclass(options) and any(f.name == "enabled" for f in fields(options))):
        raise TypeError(f"logger backend {name}: options must be a dataclass with an `enabled` field")

    def register(logger_class: type) -> type:
        if name in BACKENDS and BACKENDS[name].logger is not logger_class:
            raise TypeError(f"logger backend {name} is registered twice")
        BACKENDS[name] = Backend(name, options, package, logger_class, summary)
        return logger_class

    return register


def discover() -> dict[str, Backend]:
    """Import every module of this package (each registers its backend); returns the registry."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return BACKENDS


def options_schema(module: str) -> type:
    """The `logger` node of the run config: one field per backend, holding its options. `module`
    must bind the class as `LoggerConfig` at its top level: configs sent to launcher workers are
    pickled, which finds the class there by name (otherwise it travels by value, and the worker's
    copy is not the class its own schema holds)."""
    backends = discover()
    schema = make_dataclass(
        "LoggerConfig",
        [(name, b.options, field(default_factory=b.options)) for name, b in sorted(backends.items())],
        namespace={"__doc__": "Where the per-generation records go besides metrics.csv and the terminal "
                              "(always on): `logger=<backend>`, several with `logger=[a,b]`, or "
                              "`logger.<backend>.enabled=true`."})
    schema.__module__ = module
    return schema


def help_text() -> str:
    """The `evorl train --help` section that lists the optional backends, from the registry."""
    lines = ["== Logger backends ==",
             "metrics.csv and the terminal table are always on. Switch others on with logger=<name>,",
             "several with logger=[a,b]; their options are logger.<name>.* (listed above)."]
    for name, b in sorted(discover().items()):
        lines += [f"  {name:<12} {b.summary}", f"  {'':<12} needs: pip install \"evorl-cli[{name}]\""]
    return "\n".join(lines) + "\n"


def enabled(logger_config: Any) -> list[Backend]:
    """The backends switched on in a run's `logger` config, in name order."""
    return [b for name, b in sorted(BACKENDS.items()) if getattr(logger_config, name).enabled]


def missing_package(name: str) -> EvorlError:
    """The one line that says how to install backend `name`'s package, or turn it off."""
    package = BACKENDS[name].package if name in BACKENDS else name
    return EvorlError(f"logger {name} needs the {package} package: pip install \"evorl-cli[{name}]\" "
                      f"(or turn it off: logger.{name}.enabled=false)")


def require(module: str, name: str):
    """Import backend `name`'s third-party `module`, or stop with the line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_package(name) from None


def check_installed(logger_config: Any) -> None:
    """Before a run starts (the CLI's preflight): every enabled backend's package is installed."""
    for b in enabled(logger_config):
        try:
            found = importlib.util.find_spec(b.package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_package(b.name)


def check_options(logger_config: Any) -> Optional[str]:
    """The first problem an enabled backend finds in its options (its `check()` method, if it has
    one), as one line naming the key; None when all are fine."""
    for b in enabled(logger_config):
        check = getattr(getattr(logger_config, b.name), "check", None)
        problem = check() if check else None
        if problem:
            return f"logger.{b.name}.{problem}"
    return None
