# asyncua types its ids as NewType aliases (Int32, UInt32, DateTime) and re-exports without __all__:
# plain ints, strs and datetimes are what it accepts at run time.
# mypy: disable-error-code="attr-defined,arg-type"
"""A real asyncua server holding a flat set of variables lineside can set from Python.

Used by the line simulator and by the OPC UA peer of the driver contract suite. Variables
live under ``Objects/<ns>:<folder>`` with string node ids ``ns=<ns>;s=<folder>.<name>`` and
browse names ``<ns>:<name>``, so they can be addressed both ways. ``stop()`` / ``start()``
builds a fresh server on the same port with the same node ids and values (a PLC restart).

Operation limits (optional): ``max_nodes_per_read`` makes a Read of more nodes fail with
BadTooManyOperations, as a server with a MaxNodesPerRead limit does. ``reads`` lists how many
nodes each Read request carried (requests touching only other nodes are not counted).

Security (optional): ``security=OpcUaServerSecurity(...)`` restricts the endpoints to the
given policies, loads the server certificate and key, trusts only client certificates in
``trusted_client_certs``, and checks username/password against ``users``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.server.user_managers import UserManager

__all__ = ["UA_TYPES", "OpcUaNodeServer", "OpcUaServerSecurity", "PasswordUserManager"]

UA_TYPES: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean,
    "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64,
    "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double,
    "string": ua.VariantType.String,
}


class PasswordUserManager(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


@dataclass
class OpcUaServerSecurity:
    certificate: Path  # server certificate (DER or PEM)
    private_key: Path
    policies: Sequence[ua.SecurityPolicyType] = (ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,)
    trusted_client_certs: Path | None = None  # a directory of trusted client certificates
    users: dict[str, str] = field(default_factory=dict)  # username -> password; empty: anonymous


class OpcUaNodeServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 4840, *, folder: str = "Line",
                 namespace: str = "urn:lineside:sim", security: OpcUaServerSecurity | None = None) -> None:
        self.host, self.port, self.folder, self.namespace = host, port, folder, namespace
        self.security = security
        self.ns = 2
        self._specs: dict[str, tuple[str, Any]] = {}  # name -> (type, value)
        self._numeric: dict[str, int] = {}  # name -> numeric identifier, for ns=N;i=... nodes
        self._nodes: dict[str, Any] = {}
        self._server: Server | None = None
        self.max_nodes_per_read: int | None = None
        self.reads: list[int] = []  # nodes per Read request that touched one of our variables
        # asyncua logs every refused connection at ERROR; the tests provoke some on purpose
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def node_id(self, name: str) -> str:
        if name in self._numeric:
            return f"ns={self.ns};i={self._numeric[name]}"
        return f"ns={self.ns};s={self.folder}.{name}"

    def browse_path(self, name: str) -> str:
        return f"/Objects/{self.ns}:{self.folder}/{self.ns}:{name}"

    def add(self, name: str, type_: str, value: Any, *, numeric_id: int | None = None) -> None:
        """Declare a variable (before start(), or between stop() and start())."""
        self._specs[name] = (type_, value)
        if numeric_id is not None:
            self._numeric[name] = numeric_id

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        server = Server(user_manager=PasswordUserManager(self.security.users) if self.security and
                        self.security.users else None)
        await server.init()
        server.set_endpoint(self.endpoint + "/")
        server.set_server_name("lineside simulator")
        if self.security is not None:
            await self._secure(server, self.security)
        self.ns = await server.register_namespace(self.namespace)
        obj = await server.nodes.objects.add_object(ua.NodeId(self.folder, self.ns), f"{self.ns}:{self.folder}")
        self._nodes = {}
        for name, (type_, value) in self._specs.items():
            vt = UA_TYPES[type_]
            nid = ua.NodeId(self._numeric[name], self.ns) if name in self._numeric else ua.NodeId(
                f"{self.folder}.{name}", self.ns)
            node = await obj.add_variable(nid, f"{self.ns}:{name}",
                                          ua.Variant(value, vt))
            await node.set_writable()
            self._nodes[name] = node
        server.subscribe_server_callback(CallbackType.PreRead, self._pre_read)
        await server.start()
        self._server = server

    def _pre_read(self, event: Any, _dispatcher: Any) -> None:
        nodes = event.request_params.NodesToRead
        ours = {n.nodeid for n in self._nodes.values()}
        if any(rv.NodeId in ours for rv in nodes):
            self.reads.append(len(nodes))
        if self.max_nodes_per_read is not None and len(nodes) > self.max_nodes_per_read:
            # a ServiceFault for the whole request, as the spec's operation limits say
            raise ua.UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)

    async def _secure(self, server: Server, sec: OpcUaServerSecurity) -> None:
        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

        server.set_security_policy(list(sec.policies))
        await server.load_certificate(str(sec.certificate))
        await server.load_private_key(str(sec.private_key))
        if sec.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if sec.trusted_client_certs is not None:
            store = TrustStore([sec.trusted_client_certs], [])
            await store.load()
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for name, node in self._nodes.items():  # keep the values (a client may have written some) for start()
            dv = await node.read_data_value(raise_on_bad_status=False)  # a Bad status still has its value
            if dv.Value is not None and dv.Value.Value is not None:
                self._specs[name] = (self._specs[name][0], dv.Value.Value)
        await _stop(server)
        await asyncio.sleep(0)

    async def set(self, name: str, value: Any, *, source_ts: dt.datetime | None = None,
                  status: ua.StatusCode | None = None) -> None:
        type_ = self._specs[name][0]
        self._specs[name] = (type_, value)
        if self._server is None:
            return
        dv = ua.DataValue(ua.Variant(value, UA_TYPES[type_]), StatusCode=status or ua.StatusCode(ua.StatusCodes.Good),
                          SourceTimestamp=source_ts or dt.datetime.now(dt.UTC),
                          ServerTimestamp=dt.datetime.now(dt.UTC))
        await self._server.write_attribute_value(self._nodes[name].nodeid, dv)

    async def set_many(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            await self.set(name, value)

    def get(self, name: str) -> Any:
        return self._specs[name][1]


async def _stop(server: Server) -> None:
    """``server.stop()``, which returns even while a client keeps reconnecting.

    asyncua closes the connections it knows of, yields, and then waits in ``wait_closed()`` for
    every connection to end; one accepted while it yielded stays open, and the stop never returns.
    A PLC outage in the simulator meets exactly that: lineside's driver reconnects within
    milliseconds. So the listening socket closes first, and whatever connection still holds the
    stop is closed again every 0.1 s.
    """
    listener: asyncio.Server | None = getattr(server.bserver, "_server", None)
    if listener is not None:
        listener.close()  # no new connections; asyncua's own close() of it later does nothing
    stopping = asyncio.ensure_future(server.stop())
    while not stopping.done():
        await asyncio.wait({stopping}, timeout=0.1)
        for transport in list(server.iserver.asyncio_transports):
            transport.close()
    stopping.result()
