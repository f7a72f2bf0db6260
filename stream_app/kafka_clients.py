"""Client settings for the three Kafka clients in use, and topic creation.

Faust (stream workers), aiokafka (teacher workers) and kafka-python (CLI tools, admin)
name the same security settings differently; this module is the one translation.
"""

from __future__ import annotations

import ssl
from typing import Any

from stream_app.settings import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if "SSL" not in settings.security_protocol:
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        config.update(
            sasl_mechanism=settings.sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if (context := _ssl_context(settings)) is not None:
        config["ssl_context"] = context
    return config


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers.split(","), "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        config.update(
            sasl_mechanism=settings.sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if "SSL" in settings.security_protocol:
        config.update(ssl_cafile=settings.ssl_cafile or None, ssl_certfile=settings.ssl_certfile or None, ssl_keyfile=settings.ssl_keyfile or None)
    return config


def faust_credentials(settings: Settings) -> Any:
    import faust

    context = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic of the pipeline with its partition count."""
    return {
        settings.input_topic: settings.input_partitions,
        settings.teacher_topic: settings.teacher_partitions,
        settings.student_results_topic: settings.result_partitions,
        settings.teacher_results_topic: settings.result_partitions,
        settings.output_topic: settings.result_partitions,
        settings.dlq_topic: 1,
    }


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
        missing = [
            NewTopic(name, partitions, settings.replication_factor) for name, partitions in wanted.items() if name not in existing
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
