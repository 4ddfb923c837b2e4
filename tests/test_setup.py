"""The README's set-up is two commands, and CI runs exactly those, with every optional package the
tests use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def setup_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_the_readme_sets_up_in_two_one_line_commands():
    first, second = setup_commands()  # exactly two
    assert "\n" not in first and "\n" not in second
    steps = first.split(" && ")
    assert steps[0] == "python3 -m venv .venv" and steps[-1] == "evorl train env=acrobot"
    torch_step = next(i for i, s in enumerate(steps) if s.startswith("pip install torch"))
    evorl_step = next(i for i, s in enumerate(steps) if s.startswith("pip install -e"))
    assert torch_step < evorl_step, "the CPU build of torch goes in first, so nothing pulls CUDA wheels"
    assert steps[torch_step] == "pip install torch==2.13.0"  # the pinned CPU build, never an unpinned torch
    assert second.endswith("pytest") and 'pip install -e ".[test]"' in second


def test_ci_runs_exactly_the_readme_commands_in_order():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    positions = [ci.index(command) for command in setup_commands()]  # ValueError if one is missing
    assert positions == sorted(positions)


def test_the_test_extra_brings_every_optional_package_the_tests_skip_without():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {re.split(r"[<>=;\s\[]", requirement, maxsplit=1)[0].lower() for requirement in extras["test"]}
    skipped_without = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        skipped_without |= set(re.findall(r"importorskip\(\"([\w.]+)\"\)", path.read_text()))
    skipped_without -= {"tomllib"}  # the standard library's, used just above
    # modules by the name of the package that installs them
    installs = {"box2d": "box2d", "ale_py": "ale-py", "cv2": "opencv-python-headless"}
    skipped_without = {installs.get(m.lower(), m.lower()) for m in skipped_without}
    assert skipped_without and skipped_without <= wanted, (skipped_without, wanted)
    assert "pytest" in wanted
