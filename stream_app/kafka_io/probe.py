"""The connection probe: try the settings once against the brokers before a process starts its clients.

``check_connection`` says plainly what failed (unreachable, TLS, authentication) instead of
letting three client libraries retry, time out or log it in their own words.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time

from stream_app.kafka_io.clients import (
    SASL_MECHANISMS,
    KafkaConnectionError,
    aiokafka_config,
    bootstrap_list,
    sasl_mechanism,
    ssl_context,
)
from stream_app.settings import Settings


def check_connection(settings: Settings, timeout_s: float = 15) -> None:
    """Connect to the brokers with ``settings`` and fetch metadata once, or raise.

    Raises ``KafkaConnectionError`` with a plain message within about ``timeout_s``:

    * authentication failed for user U with mechanism M at BOOTSTRAP (the broker's reason),
      or the broker does not offer mechanism M, or does not expect SASL at all;
    * TLS handshake failed with HOST:PORT (certificate not trusted, not a TLS listener, ...);
    * broker unreachable at BOOTSTRAP (refused, unknown host, no answer), after retrying
      until ``timeout_s``, so a broker that is still starting is waited for.

    Authentication, TLS and mechanism errors are not retried: they will not heal.

    The check uses aiokafka's connection (the library of the teacher workers and, under
    Faust, of the stream workers) rather than kafka-python: after a failed authentication
    Kafka sends its error response and closes the connection at once (after
    ``connection.failed.authentication.delay.ms``), and kafka-python 3.0 drops bytes that
    arrive together with the close, so it never sees the error; it reports "Unable to
    bootstrap" once its whole bootstrap timeout has passed.
    """
    _check_settings(settings)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(_check(settings, timeout_s))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)

    # Own thread and event loop: callable from sync code and from inside a running loop.
    thread = threading.Thread(target=run, name="tango-kafka-check", daemon=True)
    thread.start()
    thread.join(timeout_s + 10)
    if not outcome:
        raise KafkaConnectionError(
            f"no answer from the brokers at {settings.bootstrap_servers} within {timeout_s:.0f}s")
    if outcome[0] is not None:
        raise outcome[0]


def _check_settings(settings: Settings) -> None:
    if not bootstrap_list(settings):
        raise KafkaConnectionError("bootstrap_servers is empty (TANGO_BOOTSTRAP_SERVERS)")
    if settings.security_protocol.startswith("SASL"):
        mechanism = sasl_mechanism(settings)
        if mechanism not in SASL_MECHANISMS:
            raise KafkaConnectionError(
                f"SASL mechanism {settings.sasl_mechanism!r} is not supported; use one of {', '.join(SASL_MECHANISMS)} "
                "(TANGO_SASL_MECHANISM)")
        if not settings.sasl_username or not settings.sasl_password:
            raise KafkaConnectionError(
                f"{settings.security_protocol} with {mechanism} needs a user name and a password "
                "(TANGO_SASL_USERNAME, TANGO_SASL_PASSWORD)")
    try:
        ssl_context(settings)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaConnectionError(
            f"cannot load the TLS files (ssl_cafile={settings.ssl_cafile!r}, ssl_certfile={settings.ssl_certfile!r}, "
            f"ssl_keyfile={settings.ssl_keyfile!r}): {exc}") from None


async def _check(settings: Settings, timeout_s: float) -> None:
    from aiokafka.conn import collect_hosts

    bootstrap = settings.bootstrap_servers
    config = aiokafka_config(settings)
    del config["bootstrap_servers"]
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    unreachable: dict[str, str] = {}  # host:port -> why, for the final message
    no_answer: dict[str, str] = {}
    delay = 0.25
    while True:
        for host, port, _ in collect_hosts(bootstrap_list(settings), randomize=False):
            where = f"{host}:{port}"
            at = bootstrap if bootstrap.strip() == where else f"{bootstrap} ({where})"
            if time.monotonic() >= deadline:
                break
            # 1. TCP alone, so "unreachable" is told apart from everything after it.
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), left())
                writer.close()
            except (OSError, asyncio.TimeoutError) as exc:
                unreachable[where] = _describe(exc) if str(exc) else "no answer"
                continue
            unreachable.pop(where, None)
            # 2. TLS alone (SSL, SASL_SSL), with the very context the clients get.
            if "ssl_context" in config:
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port, ssl=config["ssl_context"], server_hostname=host), left())
                    writer.close()
                except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
                    hint = "" if isinstance(exc, ssl.SSLCertVerificationError) else "; is this a TLS listener?"
                    raise KafkaConnectionError(f"TLS handshake failed at {at}: {_describe(exc)}{hint}") from None
            # 3. A client connection (ApiVersions, SASL), then one metadata request.
            why = await _metadata_answer(host, port, config, left, at, settings)
            if why is None:
                return
            no_answer[where] = why
        if time.monotonic() + delay >= deadline:
            break
        await asyncio.sleep(delay)  # unreachable or no answer: maybe still starting; try again
        delay = min(delay * 2, 2.0)
    failures = {**unreachable, **no_answer}
    detail = "; ".join(f"{where}: {why}" for where, why in failures.items()) or "no attempt finished"
    if no_answer:
        raise KafkaConnectionError(f"no usable answer from the broker at {bootstrap} within {timeout_s:g}s: {detail}")
    raise KafkaConnectionError(f"broker unreachable at {bootstrap} within {timeout_s:g}s: {detail}")


async def _metadata_answer(host: str, port: int, config: dict, left, at: str, settings: Settings) -> str | None:
    """None once the broker answered a metadata request; why not, if it may still heal.

    Raises ``KafkaConnectionError`` for what will not heal (authentication, TLS, a SASL listener).
    """
    from aiokafka import errors as aerrors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    protocol, user, mechanism = settings.security_protocol, settings.sasl_username, config.get("sasl_mechanism")
    conn = None
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, client_id="tango-check", request_timeout_ms=int(left() * 1000), **config),
            left())
        await asyncio.wait_for(conn.send(MetadataRequest([])), left())
        return None
    except (aerrors.SaslAuthenticationFailed, aerrors.AuthenticationFailedError) as exc:
        raise KafkaConnectionError(
            f"authentication failed for user {user!r} with mechanism {mechanism} at {at}: {_describe(exc)}"
        ) from None
    except aerrors.UnsupportedSaslMechanismError:
        raise KafkaConnectionError(
            f"authentication failed for user {user!r} at {at}: the broker does not offer SASL mechanism "
            f"{mechanism} (TANGO_SASL_MECHANISM)") from None
    except aerrors.IllegalSaslStateError:
        raise KafkaConnectionError(
            f"authentication failed for user {user!r} with mechanism {mechanism} at {at}: the broker refused "
            f"the SASL handshake; is this a SASL listener? (security_protocol is {protocol})") from None
    except ssl.SSLError as exc:
        raise KafkaConnectionError(f"TLS handshake failed at {at}: {_describe(exc)}") from None
    except (OSError, asyncio.TimeoutError, aerrors.KafkaError) as exc:
        if conn is not None and not protocol.startswith("SASL") and isinstance(exc, aerrors.KafkaConnectionError):
            # Connected, ApiVersions answered, then a hang-up on the metadata request: what
            # a SASL listener does to a client that skips authentication. Will not heal.
            raise KafkaConnectionError(
                f"the broker at {at} closed the connection instead of answering a metadata request: its "
                f"listener probably requires SASL authentication (security_protocol is {protocol}; see "
                "TANGO_SECURITY_PROTOCOL, TANGO_SASL_MECHANISM, TANGO_SASL_USERNAME, TANGO_SASL_PASSWORD)"
            ) from None
        return (
            f"connected, but no metadata answer ({_describe(exc) if str(exc) else 'timed out'}); does the "
            f"listener expect another security protocol than {protocol}?")
    finally:
        if conn is not None:
            conn.close()


def _describe(exc: BaseException) -> str:
    """An exception as one readable phrase: aiokafka's "[Error 58] SaslAuthenticationFailed: why" becomes "why"."""
    text = str(exc).strip()
    if text.startswith("[Error ") and "]" in text:
        text = text.split("]", 1)[1].strip()
    prefix = f"{type(exc).__name__}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    return text or type(exc).__name__
