"""The Grafana dashboard (deploy/grafana/tango-stream.json) checked against the metrics the code exports.

Every metric a panel's PromQL names must be one a tango process exports: the ``tango_*`` names of
``stream_app.metrics.METRIC_NAMES`` (histograms with their ``_bucket``/``_sum``/``_count`` series),
plus prometheus-client's process metrics. Label values the code defines (stage, kind, tier,
outcome) must be real ones, functions must be PromQL's, and every query goes to the dashboard's
Prometheus datasource variable, so the dashboard imports into any Grafana.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from stream_app.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "tango-stream.json"

HISTOGRAMS = ("tango_batch_records", "tango_model_seconds", "tango_end_to_end_latency_seconds")
OTHER_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes")  # prometheus-client's ProcessCollector
LABEL_VALUES = {
    "stage": {"student", "merge", "teacher", "audit"},
    "kind": {"result", "teacher_request", "output", "shadow_request", "shadow_result", "dead_letter"},
    "tier": {"student", "teacher"},
    "outcome": {"ok", "refused"},
}
PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "count_values", "delta", "deriv", "exp", "floor", "group", "histogram_quantile",
    "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max",
    "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "quantile_over_time", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev", "stdvar", "sum", "sum_over_time", "time",
    "timestamp", "topk", "vector",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names() -> tuple[str, ...]:
    """The ``tango_*`` metric names the code exports."""
    return tuple(METRIC_NAMES)


# ------------------------------------------------------------------------------ parsing
def panels(dashboard: Mapping) -> Iterator[Mapping]:
    """Every panel, rows' nested panels included."""
    def walk(items):
        for panel in items:
            yield panel
            yield from walk(panel.get("panels") or [])
    yield from walk(dashboard.get("panels") or [])


def expressions(dashboard: Mapping) -> Iterator[tuple[str, Mapping, str]]:
    """(panel title, target, PromQL expression) of every query."""
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            yield panel.get("title", "?"), target, target.get("expr", "")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def parse(expr: str) -> tuple[list[str], list[str], list[tuple[str, str, str]]]:
    """(metric names, function names, label matchers) an expression uses."""
    matchers = [m for block in _MATCHERS.findall(expr) for m in _MATCHER.findall(block)]
    bare = _MATCHERS.sub(" ", _STRING.sub('""', expr))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range and subquery selectors: [5m], [$__rate_interval]
    bare = _GROUPING.sub(" ", bare)
    metrics, functions = [], []
    for name, call in _IDENT.findall(bare):
        if call:
            functions.append(name)
        elif name not in PROMQL_KEYWORDS:
            metrics.append(name)
    return metrics, functions, matchers


def check_expression(expr: str, known: tuple[str, ...]) -> list[str]:
    problems = []
    metrics, functions, matchers = parse(expr)
    if not metrics:
        problems.append("names no metric")
    for name in metrics:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in HISTOGRAMS:
            problems.append(f"{name} is a histogram: query its _bucket, _sum or _count series")
        elif base in HISTOGRAMS and base in known:
            continue
        elif name.startswith("tango_") and name not in known:
            problems.append(f"{name} is not a metric of stream_app.metrics")
        elif not name.startswith("tango_") and name not in OTHER_METRICS:
            problems.append(f"{name} is not a metric a tango process exports")
    for function in functions:
        if function not in PROMQL_FUNCTIONS:
            problems.append(f"{function}() is not a PromQL function")
    for label, op, value in matchers:
        if label in LABEL_VALUES and op in ("=", "=~"):
            for alternative in value.split("|") if op == "=~" else [value]:
                if alternative not in LABEL_VALUES[label]:
                    known = ", ".join(sorted(LABEL_VALUES[label]))
                    problems.append(f'{label}="{alternative}" is no {label} the code uses ({known})')
    return problems


def check_dashboard(dashboard: Mapping, known: tuple[str, ...]) -> list[str]:
    problems = []
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    source = variables.get("datasource") or {}
    if (source.get("type"), source.get("query")) != ("datasource", "prometheus"):
        problems.append("no `datasource` variable of type datasource for Prometheus")
    ids = [p.get("id") for p in panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids are missing or repeated: {ids}")
    for panel in panels(dashboard):
        grid = panel.get("gridPos") or {}
        if not grid or grid.get("x", 0) + grid.get("w", 0) > 24:
            problems.append(f"panel {panel.get('title')!r}: gridPos {grid} is missing or wider than 24")
        if panel.get("type") != "row" and (panel.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"panel {panel.get('title')!r}: datasource is not ${{datasource}}")
    for title, target, expr in expressions(dashboard):
        if (target.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{title} {target.get('refId')}: datasource is not ${{datasource}}")
        problems += [f"{title} {target.get('refId')}: {p}" for p in check_expression(expr, known)]
    return problems


# --------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_query_names_real_metrics(dashboard):
    assert len(list(expressions(dashboard))) >= 20
    assert check_dashboard(dashboard, metric_names()) == []


def test_every_metric_is_on_the_dashboard(dashboard):
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for _, _, e in expressions(dashboard) for m in parse(e)[0]}
    assert set(METRIC_NAMES) - used == set()  # every metric the code exports is on the dashboard
    assert set(OTHER_METRICS) <= used


def test_histograms_are_histograms():
    """The names queried with _bucket/_sum/_count are histograms in the code's registry."""
    from stream_app.metrics import Metrics
    from stream_app.settings import Settings

    families = {f.name: f.type for f in Metrics(Settings()).registry.collect()}
    assert {name: families.get(name) for name in HISTOGRAMS} == {name: "histogram" for name in HISTOGRAMS}


def test_panels_cover_the_pipeline(dashboard):
    titles = " | ".join(p.get("title", "") for p in panels(dashboard)).lower()
    for words in ("records in per stage", "routed fraction", "threshold", "teacher lag", "latency", "batch size",
                  "model time", "dead letters", "duplicates", "shadow agreement", "cpu seconds per 1,000", "replicas", "bundle"):
        assert words in titles, words


# ------------------------------------------------------------- the checks can fail (negative)
def test_bad_queries_are_reported(dashboard):
    broken = copy.deepcopy(dashboard)
    targets = [t for p in panels(broken) for t in p.get("targets") or []]
    targets[0]["expr"] = 'sum(rate(tango_nope_total[$__rate_interval]))'
    targets[1]["expr"] = 'histogram_quantile(0.9, sum by (le) (rate(tango_model_seconds[5m])))'
    targets[2]["expr"] = 'sum(rate(tango_records_in_total{stage="studnet"}[5m]))'
    targets[3]["expr"] = 'rat(node_cpu_seconds_total[5m])'
    targets[4]["expr"] = 'sum by (kind) (rate(tango_records_out_total{kind=~"result|teacher_requests"}[5m]))'
    targets[5]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    problems = check_dashboard(broken, metric_names())
    for needle in ("tango_nope_total is not a metric", "tango_model_seconds is a histogram", 'stage="studnet"',
                   "rat() is not a PromQL function", "node_cpu_seconds_total is not a metric", 'kind="teacher_requests"',
                   "datasource is not"):
        assert any(needle in p for p in problems), (needle, problems)


def test_parse_ignores_labels_ranges_and_grouping():
    metrics, functions, matchers = parse(
        'sum by (le, tier) (rate(tango_end_to_end_latency_seconds_bucket{tier="teacher", le!="+Inf"}'
        '[$__rate_interval] offset 5m))'
        ' / on (instance) group_left tango_bundle_info'
    )
    assert metrics == ["tango_end_to_end_latency_seconds_bucket", "tango_bundle_info"]
    assert functions == ["sum", "rate"]
    assert ("tier", "=", "teacher") in matchers
