"""The pipeline's topics: their partition counts, created when missing and checked."""

from __future__ import annotations

from stream_app.kafka_io.clients import kafka_python_config
from stream_app.settings import Settings


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic of the pipeline with its partition count."""
    return {
        settings.input_topic: settings.input_partitions,
        settings.teacher_topic: settings.teacher_partitions,
        settings.student_results_topic: settings.result_partitions,
        settings.teacher_results_topic: settings.result_partitions,
        settings.output_topic: settings.result_partitions,
        settings.dlq_topic: 1,
        settings.shadow_topic: settings.teacher_partitions,
        settings.shadow_results_topic: settings.result_partitions,
        **({settings.knowledge_topic: settings.teacher_partitions} if settings.knowledge_topic else {}),
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs set at creation, beyond the broker's defaults."""
    if not settings.knowledge_topic:
        return {}
    return {settings.knowledge_topic: {"retention.bytes": str(settings.knowledge_retention_bytes)}}


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the pipeline's missing topics; return every topic's actual partition count.

    Raises ``RuntimeError`` if the two result topics and the output topic exist with
    different partition counts: the merge's de-duplication needs them co-partitioned.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(client_id="tango-admin", **kafka_python_config(settings))
    try:
        wanted = topic_partitions(settings)
        existing = set(admin.list_topics())
        configs = topic_configs(settings)
        missing = [
            NewTopic(name, partitions, settings.replication_factor, topic_configs=configs.get(name, {}))
            for name, partitions in wanted.items() if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another process created them first
        described = admin.describe_topics(list(wanted))
        actual = {d.get("name", d.get("topic")): len(d["partitions"]) for d in described}
    finally:
        admin.close()
    merged = {actual.get(t) for t in (settings.student_results_topic, settings.teacher_results_topic, settings.output_topic)}
    if len(merged) != 1:
        raise RuntimeError(
            f"topics {settings.student_results_topic}, {settings.teacher_results_topic} and {settings.output_topic} "
            f"must have the same partition count, found {actual}"
        )
    return actual
