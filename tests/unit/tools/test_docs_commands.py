"""Every ``tango …`` command line in README.md and docs/ parses with the real CLI, so the docs
cannot drift from the code. Synopsis lines (with ``[optional]``, ``A | B`` or CAPITAL
placeholders) and prose naming a command without options are left out; every other line in a
code block, and inline code with options, must parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from stream_app.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PREFIX = re.compile(r"^(?:\.venv/bin/)?tango\s+(.*)$")


def command_lines() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        in_block = False
        for line in path.read_text().splitlines():
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            # in a block, a command line starts the line (indented text is output, like the live view)
            candidates = ([line] if not line[:1].isspace() else []) if in_block else re.findall(r"`((?:\.venv/bin/)?tango [^`]+)`", line)
            for candidate in candidates:
                if (m := PREFIX.match(candidate.split(" #")[0].strip())) is None:
                    continue
                args = m.group(1)
                if not in_block and "--" not in args:
                    continue  # prose naming a command (`tango train`), not a command line
                if args.isupper() or re.search(r"\b[A-Z]{4,}\b", args):
                    continue  # placeholders in capitals (BUNDLE, DATA): a synopsis
                if "[" in args or " | " in args or "..." in args or "…" in args:
                    continue  # a synopsis, not a command line
                found.append((f"{path.name}: {candidate}", args))
    return found


COMMANDS = command_lines()


def test_the_docs_hold_command_lines():
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("where,args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_line_parses(where, args):
    try:
        parsed = build_parser().parse_args(shlex.split(args))
    except SystemExit as exc:
        pytest.fail(f"{where} does not parse (exit {exc.code})")
    assert callable(parsed.func)
