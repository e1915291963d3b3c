"""The README is the user's contract: every setting and every CLI command must be in it."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from app.cli import app
from app.config import documented_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [name for name, _, _ in documented_settings() if f"`{name}`" not in README]
    assert not missing, f"settings missing from README.md: {missing}"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    known = {name for name, _, _ in documented_settings()}
    mentioned = set(re.findall(r"FIELDLAB_[A-Z_]+[A-Z]", README))
    assert mentioned <= known, f"README mentions unknown settings: {mentioned - known}"


def test_every_cli_command_is_documented_in_the_readme() -> None:
    group = typer.main.get_group(app)
    commands = []
    for name, command in group.commands.items():
        sub = getattr(command, "commands", None)
        commands += [f"fieldlab {name} {s}" for s in sub] if sub else [f"fieldlab {name}"]
    missing = [c for c in commands if c not in README]
    assert not missing, f"CLI commands missing from README.md: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:15])
    assert "make run" in head
    assert "make test" in head
