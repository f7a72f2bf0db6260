"""The import rules of the layout (docs/architecture.md), checked on the source and at run time.

- ``models`` imports neither ``stream_app`` nor ``workers``;
- only ``stream_app.tools`` imports ``workers``;
- ``workers`` imports ``stream_app`` but not its tools or its Faust worker;
- the pure modules load neither a Kafka client nor torch;
- no module is over about 400 lines, no function over about 80.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stream_app", "workers", "models")
PURE = ("stream_app.records", "stream_app.batching", "stream_app.student", "stream_app.merge", "stream_app.digest_window",
        "stream_app.passthrough",
        "models.precision", "stream_app.audit", "stream_app.lag_routing",
        "stream_app.local", "stream_app.settings", "models.cascade")
KAFKA_OR_TORCH = ("kafka", "aiokafka", "faust", "mode", "confluent_kafka", "torch", "transformers")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def runtime_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions; not ``if TYPE_CHECKING:`` ones."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING" for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imports_of(prefix: str) -> list[tuple[str, str]]:
    return [(name, imported) for name, path in modules().items() for imported in runtime_imports(path)
            if imported == prefix or imported.startswith(prefix + ".")]


def test_the_layout_is_found():
    names = set(modules())
    assert {"stream_app.student", "stream_app.kafka_io.transactions", "stream_app.tools.cli", "workers.teacher_stage",
            "workers.teacher_worker", "models.cascade", "models.training.pipeline"} <= names


def test_models_import_neither_stream_app_nor_workers():
    offenders = [(m, i) for m, i in imports_of("stream_app") + imports_of("workers") if m.startswith("models")]
    assert offenders == []


def test_only_tools_import_workers():
    offenders = [(m, i) for m, i in imports_of("workers") if not (m.startswith("stream_app.tools") or m.startswith("workers"))]
    assert offenders == []


def test_workers_use_neither_tools_nor_the_faust_worker():
    offenders = [(m, i) for m, i in imports_of("stream_app.tools") + imports_of("stream_app.stream_worker")
                 if m.startswith("workers")]
    assert offenders == []
    assert imports_of("stream_app") and any(m.startswith("workers") for m, _ in imports_of("stream_app"))


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_kafka_client_and_no_torch(module):
    path = modules()[module]
    direct = {i for i in runtime_imports(path) if i.split(".")[0] in KAFKA_OR_TORCH}
    assert direct == set()
    # and nothing they import does, transitively
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({KAFKA_OR_TORCH!r})))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", f"{module} loads {loaded.strip()}"


def test_size_bounds():
    too_long = []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > 400:
            too_long.append((name, len(source.splitlines())))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                too_long.append((f"{name}.{node.name}", node.end_lineno - node.lineno + 1))
    assert too_long == []


@pytest.mark.parametrize("package", ["stream_app", "workers", "models", "stream_app.kafka_io", "stream_app.tools",
                                     "models.training", "stream_app.tools.dlq", "stream_app.tools.local_broker"])
def test_every_package_says_what_lives_there(package):
    doc = ast.get_docstring(ast.parse(modules()[package].read_text()))
    assert doc and "import" in doc.lower(), f"{package}/__init__.py should say what lives there and what it may import"
