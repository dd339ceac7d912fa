"""OPC UA with Basic256Sha256 SignAndEncrypt + username/password against an asyncua server that requires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from config.models import OpcUaPlc, OpcUaSecurity, Signal
from drivers.base import DriverError, create_driver
from drivers.simulator.opcua_server import OpcUaNodeServer, OpcUaServerSecurity
from tests.drivers.conftest import free_port

PASSWORD = "correct horse"


def make_cert(d: Path, name: str, uri: str, use: x509.ObjectIdentifier) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")], [use]
    )
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / f"{name}.der", d / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


class Pki:
    def __init__(self, root: Path) -> None:
        self.server_cert, self.server_key = make_cert(root / "server", "server", "urn:lineside:test:server",
                                                      ExtendedKeyUsageOID.SERVER_AUTH)
        self.other_server_cert, _ = make_cert(root / "other", "other", "urn:other", ExtendedKeyUsageOID.SERVER_AUTH)
        self.client_cert, self.client_key = make_cert(root / "trusted", "lineside", "urn:lineside:client",
                                                      ExtendedKeyUsageOID.CLIENT_AUTH)
        self.stranger_cert, self.stranger_key = make_cert(root / "untrusted", "stranger", "urn:stranger",
                                                          ExtendedKeyUsageOID.CLIENT_AUTH)
        self.trust_dir = root / "trust"
        self.trust_dir.mkdir()
        (self.trust_dir / "lineside.der").write_bytes(self.client_cert.read_bytes())
        self.password_file = root / "password"
        self.password_file.write_text(PASSWORD + "\n")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[OpcUaNodeServer]:
    srv = OpcUaNodeServer("127.0.0.1", free_port(), security=OpcUaServerSecurity(
        certificate=pki.server_cert, private_key=pki.server_key,
        policies=[ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
        trusted_client_certs=pki.trust_dir, users={"lineside": PASSWORD},
    ))
    srv.add("Total", "uint32", 4711)
    await srv.start()
    yield srv
    await srv.stop()


def plc(server: OpcUaNodeServer, pki: Pki, *, cert: Path | None = None, key: Path | None = None,
        server_cert: Path | None = None, password_file: Path | None = None, mode: str = "poll") -> OpcUaPlc:
    return OpcUaPlc(
        endpoint=server.endpoint, mode=mode, timeout_s=2.0,  # type: ignore[arg-type]
        security=OpcUaSecurity(policy="Basic256Sha256", mode="SignAndEncrypt",
                               certificate=str(cert or pki.client_cert), private_key=str(key or pki.client_key),
                               server_certificate=str(server_cert or pki.server_cert)),
        username="lineside", password_file=str(password_file or pki.password_file),
    )


def tags(server: OpcUaNodeServer) -> dict[str, Signal]:
    return {"total_count": Signal(plc="p", address=server.node_id("Total"), type="uint32")}


async def test_basic256sha256_sign_and_encrypt_with_user_and_password_connects_and_reads(
        server: OpcUaNodeServer, pki: Pki) -> None:
    d = create_driver("p", plc(server, pki), tags(server))
    try:
        await d.connect()
        [s] = await d.read()
        assert (s.value, s.quality) == (4711, "good")
    finally:
        await d.close()


async def test_a_wrong_password_fails_with_a_message_saying_so(server: OpcUaNodeServer, pki: Pki,
                                                               tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("battery staple\n")
    d = create_driver("p", plc(server, pki, password_file=wrong), tags(server))
    try:
        with pytest.raises(DriverError, match="rejected user 'lineside': wrong username or password") as e:
            await d.connect()
        assert "battery" not in str(e.value)  # the secret never reaches a message
    finally:
        await d.close()


async def test_an_untrusted_client_certificate_fails_with_a_message_saying_so(server: OpcUaNodeServer,
                                                                              pki: Pki) -> None:
    d = create_driver("p", plc(server, pki, cert=pki.stranger_cert, key=pki.stranger_key), tags(server))
    try:
        with pytest.raises(DriverError, match=r"does not trust lineside's certificate .*stranger\.der"):
            await d.connect()
    finally:
        await d.close()


async def test_a_server_presenting_another_certificate_than_the_pinned_one_is_refused(
        server: OpcUaNodeServer, pki: Pki) -> None:
    d = create_driver("p", plc(server, pki, server_cert=pki.other_server_cert), tags(server))
    try:
        with pytest.raises(DriverError, match=r"not the pinned security\.server_certificate"):
            await d.connect()
    finally:
        await d.close()
