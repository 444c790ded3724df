"""The README documents every CLI command, and opens with the two set-up commands."""
import argparse
from pathlib import Path

import pytest

from vidconcept.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_readme(command):
    assert f"vidconcept {command}" in README, f"README.md does not document `vidconcept {command}`"


def test_readme_opens_with_demo_and_test():
    head = "\n".join(README.splitlines()[:8])
    assert "make demo" in head and "make test" in head
