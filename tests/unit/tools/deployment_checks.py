"""Checks shared by the deployment-file tests (test_deployment_files.py: Dockerfile and compose;
test_k8s_manifests.py: the Kubernetes manifests), compared with what the code really accepts.

The ``tango`` subcommands come from ``build_parser()``, the ``TANGO_*`` variables from
``setting_names()``, and values are parsed with ``Settings.from_env``: renaming a setting or a
subcommand breaks these tests instead of a container at start-up. Each ``check_*`` returns a
list of problems, empty when all is well.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from stream_app.settings import ENV_PREFIX, Settings, env_name, setting_names
from stream_app.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
BUNDLES_MOUNT = "/bundles"


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The ``tango`` subcommands, read from the real parser."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def check_command(command: Sequence[str], where: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """``tango COMMAND...`` names a real subcommand and parses."""
    parser = parser or build_parser()
    names = subcommands(parser)
    command = [str(c) for c in command]
    if not command:
        return [f"{where}: no command (the image's default is only --help)"]
    if command[0] not in names:
        return [f"{where}: {command[0]!r} is not a tango subcommand (have: {', '.join(sorted(names))})"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(command)
    except SystemExit:
        return [f"{where}: `tango {' '.join(command)}` does not parse: {stderr.getvalue().strip()}"]
    return []


_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str) -> tuple[str, list[str]]:
    """Resolve compose's ``${VAR:-default}`` / ``${VAR-default}`` to their defaults.

    The checks must not depend on the developer's shell, so variables are taken as unset:
    a reference without a default is returned as a problem.
    """
    problems: list[str] = []

    def resolve(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        expr = match.group("braced") if match.group("braced") is not None else match.group("plain")
        for sep in (":-", "-", ":?", "?"):
            name, found, rest = expr.partition(sep)
            if found and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                if sep.endswith("-"):
                    return rest
                problems.append(f"${{{expr}}} is required from the host (no default)")
                return ""
        problems.append(f"${{{expr}}} has no default, so its value depends on the host")
        return ""

    return _INTERPOLATION.sub(resolve, value), problems


def check_tango_variables(env: Mapping[str, str | None], where: str) -> list[str]:
    """Each ``TANGO_*`` variable names a real setting and its value parses and validates."""
    problems = []
    known = {env_name(n): n for n in setting_names()}
    resolved: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        if key not in known:
            problems.append(f"{where}: {key} is not a setting (see `tango settings`)")
            continue
        if value is None:
            continue  # passed through from the host; nothing to check here
        value, interpolation_problems = interpolate(value)
        problems += [f"{where}: {key}: {p}" for p in interpolation_problems]
        resolved[key] = value
    for key, value in resolved.items():
        try:
            Settings.from_env(environ={key: value})
        except ValueError as exc:
            problems.append(f"{where}: {key}={value!r}: {exc}")
    if resolved and not problems:
        try:
            Settings.from_env(environ=resolved)  # the service's settings together
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    if current.strip():
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword != "ENV":
            continue
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:
            env[tokens[0]] = " ".join(tokens[1:])  # legacy `ENV KEY value`
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env
