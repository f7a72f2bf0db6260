"""Client settings for the three Kafka clients in use: one translation of ``Settings``.

Faust (stream workers), aiokafka (teacher workers) and kafka-python (CLI tools, admin)
name the same security settings differently; this module is the one translation.

``check_connection`` tries the settings once against the brokers before a process starts
its clients, and says plainly what failed (unreachable, TLS, authentication) instead of
letting three client libraries retry, time out or log it in their own words."""

from __future__ import annotations

import ssl
from typing import Any

from stream_app.settings import Settings

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConnectionError(RuntimeError):
    """The brokers cannot be used with these settings; the message says what failed and where."""


def bootstrap_list(settings: Settings) -> list[str]:
    """``bootstrap_servers`` as a list, blanks around the commas dropped."""
    return [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]


def sasl_mechanism(settings: Settings) -> str:
    """The SASL mechanism as every client spells it: PLAIN unless set, upper case.

    aiokafka and kafka-python only accept the upper-case names and Faust's
    ``SASLMechanism`` enum is keyed by them, so ``scram-sha-512`` is normalised here.
    """
    return (settings.sasl_mechanism or "PLAIN").strip().upper()


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if "SSL" not in settings.security_protocol:
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
    return context


def compression(settings: Settings) -> str | None:
    """``compression_type`` as the producers take it (``None`` for none)."""
    return None if settings.compression_type == "none" else settings.compression_type


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": ",".join(bootstrap_list(settings)), "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        config.update(
            sasl_mechanism=sasl_mechanism(settings),
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if (context := ssl_context(settings)) is not None:
        config["ssl_context"] = context
    return config


def fetch_config(settings: Settings, min_bytes: int | None = None, max_wait_s: float = 0.0) -> dict[str, int]:
    """aiokafka consumer arguments for ``fetch_max_wait_s`` and ``fetch_min_bytes`` (or
    ``min_bytes`` and ``max_wait_s``, a consumer's own); empty when the wait is 0 (a min bytes
    above 1 with no wait would have the broker answer at once, empty)."""
    wait = max_wait_s or settings.fetch_max_wait_s
    if wait == 0:
        return {}
    return {"fetch_min_bytes": settings.fetch_min_bytes if min_bytes is None else min_bytes,
            "fetch_max_wait_ms": max(1, round(wait * 1000))}


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": bootstrap_list(settings), "security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        config.update(
            sasl_mechanism=sasl_mechanism(settings),
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if "SSL" in settings.security_protocol:
        config.update(ssl_cafile=settings.ssl_cafile or None, ssl_certfile=settings.ssl_certfile or None, ssl_keyfile=settings.ssl_keyfile or None)
    return config


def faust_credentials(settings: Settings) -> Any:
    import faust

    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=sasl_mechanism(settings),
            ssl_context=context,  # not None exactly for SASL_SSL: Faust derives SASL_SSL vs SASL_PLAINTEXT from it
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
