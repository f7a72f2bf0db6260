"""One frozen settings object for every process of the pipeline.

Each setting is one typed field below; its docstring (the ``doc`` metadata) is its
documentation. A setting ``name`` reads the environment variable ``TANGO_NAME`` and
the CLI flag ``--name`` (underscores become dashes); the flag wins over the variable,
which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.precision import PRECISIONS as TEACHER_PRECISIONS
from models.precision import STUDENT_PRECISIONS

ENV_PREFIX = "TANGO_"
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")
CACHE_DIR = Path(os.environ.get("TANGO_CACHE_DIR", Path.home() / ".cache" / "tango-stream"))


def setting(default: Any, doc: str, *, at_least: float | None = None, positive: bool = False,
            at_most: float | None = None, one_of: tuple[str, ...] = (), any_case: bool = False) -> Any:
    """One setting: its default, its documentation, and the constraints ``validated`` enforces."""
    checks = {"at_least": at_least, "positive": positive, "at_most": at_most, "one_of": one_of, "any_case": any_case}
    # "is not": a bound of 0 is a bound (0 == False, so ``not in (None, False)`` dropped it)
    return field(default=default, metadata={"doc": doc, **{k: v for k, v in checks.items() if v is not None and v is not False and v != ()}})


def constraint_errors(name: str, value: Any, meta: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``value`` for the setting ``name`` (comparisons are written so NaN fails)."""
    errors = []
    if "at_least" in meta and not value >= meta["at_least"]:
        errors.append(f"{name} must be at least {meta['at_least']:g}")
    if meta.get("positive") and not value > 0:
        errors.append(f"{name} must be positive")
    if "at_most" in meta and not value <= meta["at_most"]:
        errors.append(f"{name} must be at most {meta['at_most']:g}")
    if "one_of" in meta and value not in meta["one_of"] and not (meta.get("any_case") and str(value).lower() in meta["one_of"]):
        errors.append(f"{name} {value!r} is not one of {', '.join(meta['one_of'])}")
    return errors


@dataclass(frozen=True)
class Settings:
    # --- connection -------------------------------------------------------------------
    bootstrap_servers: str = setting("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated host:port.")
    security_protocol: str = setting(
        "PLAINTEXT", "Client security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        one_of=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str = setting("", "SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str = setting("", "SASL user name.")
    sasl_password: str = setting("", "SASL password.")
    ssl_cafile: str = setting("", "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL).")
    ssl_certfile: str = setting("", "PEM client certificate, for brokers that require client authentication.")
    ssl_keyfile: str = setting("", "PEM private key of the client certificate.")

    # --- topics (all keyed by tweet id) ----------------------------------------------
    input_topic: str = setting("tweets", "Topic of incoming tweets: JSON objects with a string `text` and optional `id`.")
    input_partitions: int = setting(4, "Partitions of the input topic when the app creates it; bounds how many stream workers help.", at_least=1)
    teacher_topic: str = setting("teacher.requests", "Topic of records the student is unsure of, read by teacher workers.")
    teacher_partitions: int = setting(8, "Partitions of the teacher topic; bounds how many teacher workers help.", at_least=1)
    student_results_topic: str = setting("results.student", "Results decided by the student.")
    teacher_results_topic: str = setting("results.teacher", "Results decided by a teacher worker.")
    result_partitions: int = setting(
        4,
        "Partitions of both result topics and the output topic. One count for all three keeps them "
        "co-partitioned, so one id always meets the same merge worker and de-duplication window.",
        at_least=1,
    )
    output_topic: str = setting("tweets.classified", "The merged output: exactly one result per input tweet.")
    dlq_topic: str = setting("tweets.dlq", "Dead letters: the original bytes of bad records, reason in the headers.")
    replication_factor: int = setting(1, "Replication factor of the topics the app creates.", at_least=1)

    # --- consumer groups ----------------------------------------------------------------
    app_id: str = setting("tango-stream", "Faust app id: the consumer group of the stream workers' student agent; their merge consumes as <app_id>-merge.")
    teacher_group: str = setting("tango-teacher", "Consumer group shared by all teacher workers.")

    # --- models -------------------------------------------------------------------------
    bundle: str = setting(str(CACHE_DIR / "bundles" / "emotion"), "Model bundle folder (manifest.json, student/, teacher/).")
    threshold: float = setting(-1.0, "Routing threshold on the student's calibrated confidence; negative means the bundle's.", at_most=1.0)
    teacher_model: str = setting("", "Teacher to serve instead of the bundle's: a local folder or a hub id.")
    teacher_precision: str = setting(
        "auto",
        "Teacher inference precision: auto, fp32, bf16, fp16 or int8. auto picks by hardware: on a GPU "
        "(used whenever torch sees one) fp16, or bf16 where the GPU supports it; on a CPU with AMX or AVX-512 "
        "BF16 bf16 (weights cast: 2-4x fp32 here, the same labels on 300 emotion tweets, "
        "docs/models.md); fp32 on other CPUs. int8 is torch's deprecated dynamic quantisation (CPU only, "
        "slower than bf16 and 98% the same labels), kept as an explicit opt-in that logs a warning. Results "
        "name the precision in the teacher version (<version>-bf16).",
        one_of=TEACHER_PRECISIONS,
    )
    student_precision: str = setting(
        "auto",
        "Student weights: auto, fp32 or bf16. auto is bf16 for a one-layer BiLSTM on a CPU with AMX or AVX-512 "
        "BF16 (its served forward pass 2.5x faster than fp32, 100% the same labels on emotion test, memory flat "
        "after its first 1,500 batches) and fp32 otherwise: an MLP is slower in bf16, and a stacked BiLSTM, served "
        "packed, grows in memory. docs/benchmarks.md.",
        one_of=STUDENT_PRECISIONS,
    )
    student_process: bool = setting(
        True, "Run the stream worker's student model in a child process of its own, so that the model and the "
        "event loop do not share one interpreter lock and the worker itself never imports torch; false runs it "
        "on a thread of the worker. docs/benchmarks.md.")
    teacher_token_budget: int = setting(
        0, "Padded tokens per teacher forward pass; texts are sorted by length and chunked. 0 chooses by device: "
        "1024 on a CPU (measured 1.5-2x cheaper per tweet than 4096 here), 16384 on a GPU.", at_least=0)
    torch_threads: int = setting(1, "torch intra-op threads of this process's model.", at_least=1)

    # --- batching -----------------------------------------------------------------------
    student_batch_size: int = setting(256, "Records per student batch; a full one also takes records already waiting, up to four times as many.", at_least=1)
    student_batch_wait: float = setting(
        0.1, "Seconds a student batch may wait, counted from when its first record reached the worker (a record that "
        "queued while the previous batch ran has already waited).", positive=True)
    student_batches_in_flight: int = setting(
        2, "Student batches processed at once, at least once: the next batch's model call runs while the one "
        "before waits for the broker's acknowledgements; inputs are still acked in order. Exactly once takes one "
        "transaction at a time. docs/benchmarks.md.", at_least=1)
    teacher_batch_size: int = setting(64, "Most records per teacher batch (shrunk when batches near the poll interval).", at_least=1)
    teacher_batch_wait: float = setting(
        0.2, "Seconds a teacher batch may wait, counted from when its first request was written (its timestamp, "
        "never later than now).", positive=True)
    merge_batch_size: int = setting(1000, "Most results per merge batch.", at_least=1)
    merge_batch_wait: float = setting(
        0.01, "Seconds a merge batch may wait, counted from when its first result was written (its timestamp, never "
        "later than now). Each student or teacher batch's results come in one burst, so a longer wait makes no "
        "larger merge batches at half load, only later results (docs/benchmarks.md).", positive=True)
    fetch_max_wait_s: float = setting(
        0.05,
        "Longest the broker holds a fetch of every consumer of the workers (the Faust agent's, the merge's, the "
        "teachers') while it gathers fetch_min_bytes (the merge: its own two settings): below capacity, fewer and larger fetches. Measured at half "
        "of capacity, 30% less stream-worker CPU per record and lower p99, for about 35 ms more median latency "
        "(docs/benchmarks.md). 0: Kafka's own behaviour, every fetch answered as soon as any record is there.",
        at_least=0,
    )
    fetch_min_bytes: int = setting(
        65536, "Bytes a fetch waits for, at most fetch_max_wait_s (Kafka's fetch.min.bytes); unused when that is 0.",
        at_least=1,
    )
    merge_fetch_min_bytes: int = setting(
        1, "Bytes a fetch of the merge waits for, at most merge_fetch_max_wait_s; fetch_min_bytes is the other consumers'. "
        "The merge's input comes already batched, one burst per student or teacher batch, so by default the broker "
        "answers at its first byte: gathering more would add the fetch wait to every result's latency "
        "(docs/benchmarks.md).",
        at_least=1,
    )
    merge_fetch_max_wait_s: float = setting(0.5, "Longest the broker holds a fetch of the merge (0: fetch_max_wait_s). At "
        "merge_fetch_min_bytes 1 it answers at the first byte, so this bounds only fetches that find nothing (an idle worker; the "
        "results topic direct_student_results empties): 500 ms against 50: 29% less idle CPU (docs/benchmarks.md).", at_least=0)
    session_timeout_s: float = setting(
        10.0, "Consumer session timeout of all workers: how soon a dead worker's partitions move to the others.",
        positive=True,
    )
    max_poll_interval_s: float = setting(
        300.0, "Consumer poll interval of teacher workers; a batch is sized to take at most a quarter of it.",
        positive=True,
    )

    # --- input validation and de-duplication ------------------------------------------
    max_text_chars: int = setting(2000, "Longest accepted `text` in characters; longer records are dead-lettered.", at_least=1)
    max_id_chars: int = setting(256, "Longest accepted `id` in characters; longer ones are dead-lettered (id_too_long).", at_least=1)
    max_record_bytes: int = setting(
        900_000,
        "Largest accepted input record in bytes (key, value, header names and values). A larger one is "
        "dead-lettered as record_too_large with its key, headers and the first 16 KiB of its value (its size in "
        "tango.dlq.original_bytes), so the dead letter fits. The default leaves room under the 1,000,000-byte "
        "request limit of Faust's producer for a result's or a dead letter's own fields.",
        at_least=1024,
    )
    dedup_window: int = setting(
        100_000,
        "Ids remembered per output partition for de-duplication. A redelivered result is dropped if "
        "fewer than this many newer ids reached its output partition since it was first emitted. A "
        "worker that gains a partition reads this many of its last output keys back first, so the "
        "window survives restarts and rebalances. Ids are kept as 128-bit digests in memory allocated when a partition "
        "is first seen: about 62 bytes per id whatever its length (25 MB for 4 partitions of 100,000).",
        at_least=1,
    )

    direct_student_results: bool = setting(
        True,
        "At least once: a stream worker merges its own student results for the output partitions whose "
        "de-duplication window it holds (its merge consumer owns them) and writes them straight to the "
        "output, de-duplicated against that window, instead of through the student-results topic: no second "
        "broker hop for them (one stream worker holds every window; N hold about 1/N each). Off, or exactly "
        "once, every result crosses the results topic into the merge (docs/benchmarks.md).",
    )

    # --- delivery guarantee ---------------------------------------------------------------
    processing_guarantee: str = setting(
        "at_least_once",
        "at_least_once or exactly_once. at_least_once: a stage produces, waits for the broker's "
        "acknowledgement, then commits its input offsets; a crash between the two redelivers the batch, "
        "the merge drops the repeats within dedup_window, and dead letters may repeat. exactly_once: every "
        "stage (student, teacher workers, merge) writes each batch's outputs, dead letters included, and its "
        "input offsets in one Kafka transaction per consumed partition, and reads its input read_committed, "
        "so a redelivered batch's earlier outputs were aborted and are never seen downstream: each result and "
        "dead letter is in its topic once, whatever dedup_window. Producers are fenced per partition "
        "(transactional id <group>-<topic>-<partition>). Cost: one producer per consumed partition, a "
        "transaction commit per partition and batch (four more round trips, a commit marker in every partition "
        "written), output visible only at commit; on the local 5,000-tweet pipeline about 7% fewer records/s "
        "(1,079 against 1,160, mean of six runs each, within the runs' spread). Readers of the output must "
        "use read_committed to benefit.",
        one_of=PROCESSING_GUARANTEES,
    )

    # --- producing -----------------------------------------------------------------------
    compression_type: str = setting(
        "lz4",
        "Compression of everything the workers produce: none, gzip, snappy, lz4 or zstd. Input in any of "
        "them is read whatever this says. lz4 measured cheapest per record here (docs/benchmarks.md).",
        one_of=COMPRESSION_TYPES,
    )

    # --- operations: metrics and health, lag-aware routing, hot reload, shadow audit ------------
    metrics_port: int = setting(
        0,
        "Port of this process's HTTP endpoint on all interfaces: /metrics (Prometheus text format), "
        "/livez and /readyz. 0 turns it off. With several processes on one host, give each its own port.",
        at_least=0, at_most=65535,
    )
    stall_timeout_s: float = setting(
        120.0,
        "/livez fails once a batch has been in flight this long, or the event loop has not ticked for "
        "this long: the worker's loop has stalled and a restart is the cure.",
        positive=True,
    )
    lag_routing: bool = setting(
        False,
        "Lag-aware routing: while the teacher group's lag on the teacher topic is over budget, stream "
        "workers lower their effective threshold by threshold_step per lag_check_interval_s, down to "
        "threshold_floor, so fewer tweets go to the teacher; once the lag is back under half the budget "
        "they raise it the same way up to the bundle's (or the threshold setting's) threshold.",
    )
    teacher_lag_budget_records: int = setting(
        2000, "Lag budget in records: the teacher group's uncommitted records on the teacher topic, summed over partitions.",
        at_least=1,
    )
    teacher_lag_budget_s: float = setting(
        0.0,
        "Lag budget in seconds: the records lag divided by the rate the teacher group committed over the "
        "last checks (infinite while it commits nothing). 0 leaves only the records budget.",
        at_least=0.0,
    )
    threshold_floor: float = setting(0.0, "Lowest threshold lag-aware routing may set (0 routes nothing).", at_least=0.0, at_most=1.0)
    threshold_step: float = setting(0.05, "How much lag-aware routing moves the threshold per check.", positive=True, at_most=1.0)
    lag_check_interval_s: float = setting(
        1.0, "Seconds between reads of the consumer groups' lag (metrics, lag-aware routing).", positive=True,
    )
    reload_check_s: float = setting(
        5.0,
        "Seconds between checks of the bundle's manifest.json for a new bundle, loaded without a restart "
        "(SIGHUP asks for a check at once). 0 turns the periodic check off.",
        at_least=0.0,
    )
    shadow_fraction: float = setting(
        0.0,
        "Shadow audit: the fraction of student-decided tweets (sampled by id hash) also sent to the "
        "teacher on shadow_topic; the teacher's answers estimate the student's live accuracy and never "
        "change the output. 0 turns it off.",
        at_least=0.0, at_most=1.0,
    )
    shadow_topic: str = setting("teacher.shadow", "Shadow-audit requests: student-decided tweets sampled for the teacher.")
    shadow_results_topic: str = setting(
        "results.shadow", "Shadow-audit answers: the teacher's label next to the student's, never merged into the output.",
    )

    # --- learning from the stream: what the teacher says is kept -------------------------------
    teacher_probs_digits: int = setting(
        3, "Decimal places of the teacher's probabilities that teacher-tier results, shadow answers and "
        "knowledge records carry (3: about 6 bytes a label).", at_least=1, at_most=8,
    )
    knowledge_topic: str = setting(
        "teacher.knowledge",
        "Where teacher workers keep what the teacher said for re-distilling the student (`tango distill "
        "--from-stream`): per routed or shadow-audited tweet its text, the teacher's probabilities and the "
        "model versions. Empty keeps nothing.",
    )
    knowledge_retention_bytes: int = setting(
        256 * 1024 * 1024,
        "Bound on what the knowledge topic keeps: its retention.bytes per partition, set when the topic is "
        "created (the oldest segments go first). -1: unbounded, kept for retention.ms alone.",
        at_least=-1,
    )

    # --- runtime --------------------------------------------------------------------------
    data_dir: str = setting(str(CACHE_DIR / "faust"), "Folder for the stream worker's local Faust state.")
    summary_interval_s: float = setting(10.0, "Seconds between a process's summary log lines.", positive=True)
    memory_trim_interval_s: float = setting(
        60.0, "Seconds between two hand-backs of the heap's free pages to the OS (glibc malloc_trim, in a thread; a no-op "
        "elsewhere). Without them a worker's resident memory climbs to the most it has ever held free. 0: never.",
        at_least=0)
    shutdown_timeout_s: float = setting(
        10.0, "Seconds a worker may take after SIGTERM to hand back or finish its batch and commit before it is ended.",
        positive=True,
    )
    log_format: str = setting("auto", "auto (JSON lines unless on a terminal), json or console.", one_of=("auto", "json", "console"))
    log_level: str = setting("info", "Log level: debug, info, warning, error.", one_of=("debug", "info", "warning", "error"), any_case=True)

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``TANGO_*`` variables, then ``overrides`` (already typed)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                values[f.name] = parse_value(f, raw, source=env_name(f.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def validated(self) -> "Settings":
        """``self``, or ``ValueError`` naming every setting that breaks its entry's constraints."""
        errors = [e for f in dataclasses.fields(self) for e in constraint_errors(f.name, getattr(self, f.name), f.metadata)]
        if errors:
            raise ValueError("invalid settings: " + "; ".join(errors))
        return self

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @property
    def merge_group(self) -> str:
        """The merge's consumer group (``stream_app.merge_worker``): the app id's, with ``-merge``."""
        return f"{self.app_id}-merge"

    @property
    def result_topics(self) -> tuple[str, str]:
        """The two topics the merge consumes: the student's results and the teachers'."""
        return self.student_results_topic, self.teacher_results_topic

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes).validated()


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def changed_env(settings: Settings) -> dict[str, str]:
    """The ``TANGO_*`` variables that give a child process every setting ``settings`` changed from its default.

    >>> changed_env(Settings(teacher_token_budget=1024, lag_routing=True, merge_batch_wait=0.02))
    {'TANGO_TEACHER_TOKEN_BUDGET': '1024', 'TANGO_MERGE_BATCH_WAIT': '0.02', 'TANGO_LAG_ROUTING': 'true'}
    """
    env = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value != f.default:
            env[env_name(f.name)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(f: dataclasses.Field, raw: str, source: str) -> Any:
    kind = type(f.default)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise ValueError(f"{source}: {raw!r} is not a valid {kind.__name__}") from None


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, documented by the setting's own docstring."""
    group = parser.add_argument_group("settings (each also read from its TANGO_* environment variable)")
    for f in dataclasses.fields(Settings):
        # argparse formats help with %: a literal % in a docstring must be doubled
        help_text = f"{f.metadata['doc']} [{env_name(f.name)}, default: {f.default!r}]".replace("%", "%%")
        if isinstance(f.default, bool):
            group.add_argument(flag_name(f.name), dest=f"setting_{f.name}", default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag_name(f.name), dest=f"setting_{f.name}", default=None,
                               type=type(f.default), metavar=type(f.default).__name__.upper(), help=help_text)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    overrides = {f.name: getattr(args, f"setting_{f.name}", None) for f in dataclasses.fields(Settings)}
    return Settings.from_env(environ, **overrides)


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]
