"""A one-node KRaft broker (the project's jars, `devtools.localkafka`) with TLS and SCRAM listeners.

Beside its PLAINTEXT listener (inter-broker traffic, readiness, creating the SCRAM users) it has:

* ``SSL``: TLS; the server certificate is signed by a CA made with ``openssl`` at fixture time, so a
  client must be given that CA (``ca.pem``) to connect;
* ``SASL_SSL``: the same TLS plus SASL/SCRAM-SHA-512 and SCRAM-SHA-256;
* ``MTLS`` (protocol SSL): TLS that also demands a client certificate signed by the CA.

The certificates name ``IP:127.0.0.1`` and ``DNS:localhost``: librdkafka and Python's ssl both check
the host name. The SCRAM users are created after start through the admin API
(AlterUserScramCredentials) on the PLAINTEXT listener, which KRaft brokers accept since Kafka 3.5.
A second, unrelated CA (``other-ca.pem``) is there to show that a client trusting the wrong CA is
refused. Everything lives in one temporary directory that `stop` removes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from confluent_kafka import Consumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported without __all__
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from bus.clients import librdkafka_security
from bus.security import KafkaSecurity
from devtools import localkafka

USER: Final = "peregrine"
PASSWORD: Final = "scram-s3cret-not-in-logs"
KEY_PASSWORD: Final = "client-key-s3cret"
_STORE_PASSWORD: Final = "broker-store-pw"
_SCRAM = (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
_OPENSSL_TIMEOUT: Final = 60


@dataclass(frozen=True)
class TlsBroker:
    cluster: localkafka.Cluster
    directory: Path
    ssl: str  # host:port of each listener
    sasl_ssl: str
    mtls: str

    @property
    def plaintext(self) -> str:
        return self.cluster.bootstrap

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")

    @property
    def other_ca_file(self) -> str:
        return str(self.directory / "other-ca.pem")

    @property
    def client_cert(self) -> str:
        return str(self.directory / "client.pem")

    @property
    def client_key(self) -> str:
        """PKCS#8 PEM encrypted with `KEY_PASSWORD`."""
        return str(self.directory / "client.key")

    def scram(self, mechanism: str = "SCRAM-SHA-512", password: str = PASSWORD) -> KafkaSecurity:
        return KafkaSecurity("SASL_SSL", ca_file=self.ca_file, sasl_mechanism=mechanism,
                             sasl_username=USER, sasl_password=password)  # fmt: skip


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True,
                          timeout=_OPENSSL_TIMEOUT, check=False)  # fmt: skip
    if done.returncode != 0:
        raise localkafka.KafkaError(f"openssl {' '.join(args[:2])} failed:\n{done.stderr}")


def _ec_key(directory: Path, name: str) -> None:
    _openssl(directory, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)


def _ca(directory: Path, stem: str) -> None:
    _ec_key(directory, f"{stem}.key")
    _openssl(directory, "req", "-x509", "-new", "-key", f"{stem}.key", "-out", f"{stem}.pem", "-days", "2",
             "-subj", f"/CN=peregrine test {stem}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip


def _signed(directory: Path, stem: str, usage: str) -> None:
    """A certificate for 127.0.0.1/localhost signed by ca.pem (`usage`: serverAuth or clientAuth)."""
    _ec_key(directory, f"{stem}.key")
    _openssl(directory, "req", "-new", "-key", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={stem}")
    ext = directory / f"{stem}.ext"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"
                   "keyUsage=critical,digitalSignature\n")  # fmt: skip
    _openssl(directory, "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{stem}.pem", "-days", "2", "-extfile", ext.name)  # fmt: skip


def make_certificates(directory: Path) -> None:
    """ca.pem, other-ca.pem, the broker's PKCS12 keystore and a client certificate with an
    encrypted key (what `--ssl-certfile`/`--ssl-keyfile` and PEREGRINE_KAFKA_SSL_KEY_PASSWORD take)."""
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _signed(directory, "server", "serverAuth")
    _openssl(directory, "pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key",
             "-certfile", "ca.pem", "-name", "kafka", "-out", "server.p12",
             "-passout", f"pass:{_STORE_PASSWORD}")  # fmt: skip
    _signed(directory, "client-plain", "clientAuth")
    (directory / "client-plain.pem").rename(directory / "client.pem")
    _openssl(directory, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client-plain.key", "-out",
             "client.key", "-passout", f"pass:{KEY_PASSWORD}")  # fmt: skip
    (directory / "client-plain.key").unlink()


def _server_properties(text: str, node: localkafka.Node, ports: dict[str, int], certs: Path) -> str:
    """The PLAINTEXT-only properties of `localkafka.prepare` with the three secured listeners added."""
    extra = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    listeners = f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
    advertised = f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}\n"
    protocols = "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    for old in (listeners, advertised, protocols):
        if old not in text:
            raise localkafka.KafkaError(f"server.properties of {node.directory} lacks {old.strip()!r}")
    text = text.replace(listeners, f"{listeners}{extra},")
    text = text.replace(advertised, f"{advertised.rstrip()},{extra}\n")
    text = text.replace(protocols, f"{protocols},SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL")
    scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return text + "\n".join([
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={certs / 'server.p12'}",
        f"ssl.keystore.password={_STORE_PASSWORD}",
        f"ssl.key.password={_STORE_PASSWORD}",
        "listener.name.mtls.ssl.client.auth=required",
        "listener.name.mtls.ssl.truststore.type=PEM",
        f"listener.name.mtls.ssl.truststore.location={certs / 'ca.pem'}",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_login}",
        f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram_login}",
        "",
    ])


def _add_scram_user(bootstrap: str, timeout: float) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for mechanism in _SCRAM:  # one request each: Kafka refuses two changes of one user in a request
        upsert = UserScramCredentialUpsertion(USER, ScramCredentialInfo(mechanism, 8192), PASSWORD.encode())
        for future in admin.alter_user_scram_credentials([upsert], request_timeout=timeout).values():
            future.result(timeout)
    # the credentials reach the broker's SCRAM cache through the metadata log: wait until it lists both
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_user_scram_credentials([USER], request_timeout=timeout)
        assert isinstance(described, dict)
        info = described[USER].result(timeout)
        if {c.mechanism for c in info.scram_credential_infos} == set(_SCRAM):
            return
        time.sleep(0.2)
    raise localkafka.KafkaError(f"SCRAM credentials of {USER!r} not visible after {timeout:.0f}s")


def start(timeout: float = 90.0) -> TlsBroker:
    """Certificates, broker configuration, start, SCRAM users; the broker is stopped on any failure."""
    root = Path(tempfile.mkdtemp(prefix="peregrine-tls-"))
    certs = root / "certs"
    certs.mkdir()
    make_certificates(certs)
    cluster = localkafka.prepare(root / "kafka", 1)
    node = cluster.nodes[0]
    ports = dict(zip(("SSL", "SASL_SSL", "MTLS"), localkafka.free_ports(3), strict=True))
    props = node.directory / "server.properties"
    props.write_text(_server_properties(props.read_text(), node, ports, certs))
    localkafka.start_node(node)
    try:
        localkafka.wait_ready(cluster, timeout)
        _add_scram_user(cluster.bootstrap, 30.0)
    except BaseException:
        stop(TlsBroker(cluster, certs, "", "", ""))
        raise
    return TlsBroker(cluster, certs, f"127.0.0.1:{ports['SSL']}", f"127.0.0.1:{ports['SASL_SSL']}",
                     f"127.0.0.1:{ports['MTLS']}")  # fmt: skip


def stop(broker: TlsBroker) -> None:
    localkafka.kill(broker.cluster)
    shutil.rmtree(broker.cluster.root.parent, ignore_errors=True)


def read_values(
    bootstrap: str, topic: str, want: int, security: KafkaSecurity, idle_s: int = 60
) -> list[bytes]:
    """The values of `topic` from the start (read_committed), until `want` of them or `idle_s` polls
    of one second in a row found nothing."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"tls-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "isolation.level": "read_committed", **librdkafka_security(security),
    })  # fmt: skip
    consumer.subscribe([topic])
    values: list[bytes] = []
    idle = 0
    try:
        while len(values) < want and idle < idle_s:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
            elif msg.error() is None:
                idle = 0
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    return values
