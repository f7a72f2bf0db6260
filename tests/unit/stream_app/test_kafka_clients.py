"""The one translation of the security settings for Faust, aiokafka and kafka-python, and
``check_connection``'s messages where no broker is needed (config, unreachable, TLS)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from stream_app.kafka_io import clients as kafka_clients
from stream_app.kafka_io.clients import (
    KafkaConnectionError,
    aiokafka_config,
    faust_credentials,
    kafka_python_config,
)
from stream_app.kafka_io.probe import check_connection
from stream_app.settings import Settings

BOOTSTRAP = "broker-1:9093, broker-2:9093"  # blank after the comma on purpose
SERVERS = ["broker-1:9093", "broker-2:9093"]
SCRAM = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="alice", sasl_password="s3cret")


def faust_auth(settings: Settings) -> dict:
    """What Faust itself hands to aiokafka for our credentials (consumer, producer and topic admin alike)."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return credentials_to_aiokafka_auth(faust_credentials(settings), None)


def assert_kafka_python_accepts(config: dict) -> None:
    # Constructing the clients would connect; their DEFAULT_CONFIG is what they accept.
    for client in (KafkaAdminClient, KafkaProducer, KafkaConsumer):
        unknown = set(config) - set(client.DEFAULT_CONFIG)
        assert not unknown, f"{client.__name__} does not accept {unknown}"


def assert_aiokafka_accepts(config: dict) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def build() -> None:  # constructors validate the security settings; nothing connects
        AIOKafkaProducer(**config)
        AIOKafkaConsumer(**config)

    asyncio.run(build())


# --- PLAINTEXT -------------------------------------------------------------------------------


def test_plaintext_translation():
    s = Settings(bootstrap_servers=BOOTSTRAP)
    assert aiokafka_config(s) == {"bootstrap_servers": ",".join(SERVERS), "security_protocol": "PLAINTEXT"}
    assert kafka_python_config(s) == {"bootstrap_servers": SERVERS, "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None
    assert faust_auth(s) == {"security_protocol": "PLAINTEXT"}
    assert_kafka_python_accepts(kafka_python_config(s))
    assert_aiokafka_accepts(aiokafka_config(s))


# --- SASL_PLAINTEXT + SCRAM ------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext_scram_translation(mechanism):
    s = Settings(bootstrap_servers=BOOTSTRAP, **{**SCRAM, "sasl_mechanism": mechanism})
    upper = mechanism.upper()  # every client only knows the upper-case names
    sasl = {"sasl_mechanism": upper, "sasl_plain_username": "alice", "sasl_plain_password": "s3cret"}
    assert aiokafka_config(s) == {"bootstrap_servers": ",".join(SERVERS), "security_protocol": "SASL_PLAINTEXT", **sasl}
    assert kafka_python_config(s) == {"bootstrap_servers": SERVERS, "security_protocol": "SASL_PLAINTEXT", **sasl}

    credentials = faust_credentials(s)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.mechanism.value == upper
    # Faust passes the mechanism through to aiokafka unchanged, with no TLS.
    assert faust_auth(s) == {"security_protocol": "SASL_PLAINTEXT", "ssl_context": None, **sasl}
    assert_kafka_python_accepts(kafka_python_config(s))
    assert_aiokafka_accepts(aiokafka_config(s))


def test_sasl_mechanism_defaults_to_plain():
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    assert aiokafka_config(s)["sasl_mechanism"] == kafka_python_config(s)["sasl_mechanism"] == "PLAIN"
    assert faust_auth(s)["sasl_mechanism"] == "PLAIN"


def test_faust_app_clients_get_the_scram_settings(tmp_path):
    """The stream worker's Faust app: its producer gets exactly our SASL settings."""
    import faust

    s = Settings(bootstrap_servers="127.0.0.1:9094", **SCRAM)

    async def producer_auth() -> dict:
        app = faust.App("t-creds", broker="kafka://127.0.0.1:9094", broker_credentials=faust_credentials(s),
                        web_enabled=False, datadir=str(tmp_path))
        producer = app.producer  # built, not started
        return {**producer._settings_default(), **producer._settings_auth()}  # the kwargs Faust gives AIOKafkaProducer

    settings = asyncio.run(producer_auth())
    assert settings["security_protocol"] == "SASL_PLAINTEXT"
    assert settings["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (settings["sasl_plain_username"], settings["sasl_plain_password"]) == ("alice", "s3cret")


# --- TLS -------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _make_ca(d, "tango-test-ca")
    other_ca, _ = _make_ca(d, "other-ca")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=d)
    return {"ca": ca, "other_ca": other_ca, "cert": d / "server.pem", "key": d / "server.key"}


def test_sasl_ssl_translation(pki):
    s = Settings(bootstrap_servers=BOOTSTRAP, **{**SCRAM, "security_protocol": "SASL_SSL"}, ssl_cafile=str(pki["ca"]))
    config = aiokafka_config(s)
    context = config.pop("ssl_context")
    assert config == {"bootstrap_servers": ",".join(SERVERS), "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "alice", "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(dict(x[0] for x in ca["subject"]).get("commonName") == "tango-test-ca" for ca in context.get_ca_certs())

    kp = kafka_python_config(s)
    assert kp == {"bootstrap_servers": SERVERS, "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "alice", "sasl_plain_password": "s3cret",
                  "ssl_cafile": str(pki["ca"]), "ssl_certfile": None, "ssl_keyfile": None}
    assert_kafka_python_accepts(kp)

    credentials = faust_credentials(s)
    assert credentials.protocol.value == "SASL_SSL"  # Faust derives it from ssl_context being set
    auth = faust_auth(s)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext) and auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert_aiokafka_accepts(aiokafka_config(s))


def test_ssl_translation_with_client_certificate(pki):
    s = Settings(security_protocol="SSL", ssl_cafile=str(pki["ca"]), ssl_certfile=str(pki["cert"]), ssl_keyfile=str(pki["key"]))
    assert "sasl_mechanism" not in aiokafka_config(s) and "sasl_mechanism" not in kafka_python_config(s)
    assert isinstance(aiokafka_config(s)["ssl_context"], ssl.SSLContext)  # the certificate chain loaded
    assert kafka_python_config(s)["ssl_certfile"] == str(pki["cert"])
    credentials = faust_credentials(s)
    assert credentials.protocol.value == "SSL"
    assert faust_auth(s)["security_protocol"] == "SSL"


# --- check_connection without a broker --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("changes, words", [
    (dict(sasl_username=""), "needs a user name and a password"),
    (dict(sasl_password=""), "TANGO_SASL_PASSWORD"),
    (dict(sasl_mechanism="GSSAPI-ish"), "is not supported"),
])
def test_check_connection_rejects_incomplete_sasl_settings_at_once(changes, words):
    with pytest.raises(KafkaConnectionError, match=words):
        check_connection(Settings(bootstrap_servers="127.0.0.1:1", **{**SCRAM, **changes}), timeout_s=30)


def test_check_connection_unreachable_within_timeout():
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(KafkaConnectionError) as info:
        check_connection(Settings(bootstrap_servers=f"127.0.0.1:{port}"), timeout_s=1.5)
    assert time.monotonic() - t0 < 6
    assert str(info.value).startswith(f"broker unreachable at 127.0.0.1:{port}")


class _TLSServer:
    """Accepts TLS connections on 127.0.0.1 with the given certificate, then hangs up."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_check_connection_names_an_untrusted_certificate(pki):
    server = _TLSServer(pki["cert"], pki["key"])
    try:
        s = Settings(bootstrap_servers=f"127.0.0.1:{server.port}", security_protocol="SSL", ssl_cafile=str(pki["other_ca"]))
        t0 = time.monotonic()
        with pytest.raises(KafkaConnectionError) as info:
            check_connection(s, timeout_s=10)
        assert time.monotonic() - t0 < 5  # not retried: a certificate does not heal
        message = str(info.value)
        assert message.startswith(f"TLS handshake failed at 127.0.0.1:{server.port}")
        assert "certificate verify failed" in message
    finally:
        server.close()


def test_check_connection_names_a_listener_that_is_not_tls(pki):
    plain = socket.create_server(("127.0.0.1", 0))  # accepts, reads nothing, closes at once

    def serve() -> None:
        for _ in range(5):
            try:
                conn, _ = plain.accept()
                conn.close()
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    port = plain.getsockname()[1]
    try:
        s = Settings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_SSL", ssl_cafile=str(pki["ca"]), **{
            k: v for k, v in SCRAM.items() if k != "security_protocol"})
        with pytest.raises(KafkaConnectionError, match=f"TLS handshake failed at 127.0.0.1:{port}.*TLS listener"):
            check_connection(s, timeout_s=10)
    finally:
        plain.close()


def test_check_connection_reports_unreadable_tls_files(tmp_path):
    s = Settings(security_protocol="SSL", ssl_cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(KafkaConnectionError, match="cannot load the TLS files"):
        check_connection(s, timeout_s=5)


def test_connection_error_is_a_runtime_error():
    assert issubclass(kafka_clients.KafkaConnectionError, RuntimeError)
