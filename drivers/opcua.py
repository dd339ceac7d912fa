# asyncua types its ids as NewType aliases (Int32, UInt32, DateTime) and re-exports without __all__:
# plain ints, strs and datetimes are what it accepts at run time.
# mypy: disable-error-code="attr-defined,arg-type"
"""OPC UA driver on asyncua.

Options (``driver: opcua``, see config.models.OpcUaPlc): ``endpoint`` (opc.tcp://host:port),
``mode`` ``subscribe`` (monitored items, ``queue_size`` values queued per item on the server
between publishes) or ``poll`` (Read service every ``interval_ms`` in chunks of ``read_chunk``
nodes, halved automatically when the server answers BadTooManyOperations), ``security``
(policy None / Basic256Sha256 / Aes128_Sha256_RsaOaep / Aes256_Sha256_RsaPss, mode Sign or
SignAndEncrypt, ``certificate`` + ``private_key`` files of lineside, ``server_certificate``:
the server certificate to pin - a server presenting another one is refused), ``username`` +
``password_file`` (the password is read from the file, never from the config, never logged),
``timeout_s``.

Addresses (``Signal.address``):

- any node id string: ``ns=2;s=Line3.Counters.Total``, ``ns=2;i=1234``, ``ns=3;g=<guid>``,
  ``nsu=urn:vendor:plc;s=Total`` (namespace by URI);
- a browse path from the root, each element ``<ns index>:<BrowseName>`` (the ``Objects``
  folder needs none): ``/Objects/2:Line3/2:Counters/2:Total``.

Each sample carries the server's source timestamp and quality (Good -> good, Uncertain* ->
uncertain, Bad* -> bad with the status code name as error). After a server restart the driver
reconnects with backoff and creates the subscription again.

Subscription loss accounting (``driver.loss``, summed into ``health.overflows``, logged as
``subscription_values_lost``): a value flagged with the Overflow InfoBit (a compliant server
dropped values before it); a publish in which a monitored item's queue arrived full without that
bit (servers such as asyncua's drop the oldest value silently; a queue that is exactly full is
counted too - it cannot be told apart); a NotificationMessage sequence number never received.
What this cannot see is listed in drivers/README.md ("OPC UA subscription loss").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.crypto import security_policies as sp
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from config.models import OpcUaPlc, Plc, Signal
from drivers.base import Driver, DriverError, Emit, OnState, Sample, TagError, Value, _call
from edge.logs import get_logger

__all__ = ["OVERFLOW_BITS", "OpcUaDriver", "SubscriptionLoss", "parse_address"]

_POLICIES: dict[str, type[sp.SecurityPolicy]] = {
    "Basic256Sha256": sp.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": sp.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": sp.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
# Part 4 §7.34.1: InfoType = DataValue (0x400) and the Overflow bit (0x80)
OVERFLOW_BITS = 0x0480
_AUTH_CODES = {
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadUserSignatureInvalid,
}
_CERT_CODES = {
    ua.StatusCodes.BadCertificateUntrusted, ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed, ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateRevoked,
}


def parse_address(address: str) -> ua.NodeId | list[str]:
    """A node id, or the browse path elements (``["0:Objects", "2:Line3", ...]``)."""
    a = address.strip()
    if a.startswith("/"):
        parts = [p for p in a.split("/") if p]
        if not parts:
            raise TagError(f"bad OPC UA browse path {address!r}: empty")
        out = []
        for i, p in enumerate(parts):
            if ":" not in p:
                if i == 0 and p in ("Objects", "Types", "Views"):
                    p = "0:" + p
                else:
                    raise TagError(
                        f"bad OPC UA browse path {address!r}: element {p!r} needs its namespace index, e.g. 2:{p}"
                    )
            ns, _, name = p.partition(":")
            if not ns.isdigit() or not name:
                raise TagError(f"bad OPC UA browse path {address!r}: element {p!r} is not <ns>:<BrowseName>")
            out.append(p)
        return out
    try:
        return ua.NodeId.from_string(a)
    except (ValueError, UaError, KeyError, IndexError) as exc:
        raise TagError(
            f"bad OPC UA node id {address!r}: expected ns=2;s=Name, ns=2;i=123, nsu=URI;s=Name "
            f"or a browse path /Objects/2:Folder/2:Name ({exc})"
        ) from exc


def _epoch(t: dt.datetime | None) -> float | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def _coerce(value: Any, sig: Signal) -> Value:
    """The server's value as the configured type; TypeError/ValueError when it is not one."""
    t = sig.type
    if t == "string":
        return value if isinstance(value, str) else str(value)
    if t == "bool":
        if isinstance(value, bool | int):
            return bool(value)
        raise TypeError(f"expected bool, server sent {type(value).__name__}")
    if isinstance(value, bool):
        value = int(value)
    if t.startswith("float"):
        if isinstance(value, int | float):
            return float(value)
        raise TypeError(f"expected {t}, server sent {type(value).__name__}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"expected {t}, server sent {type(value).__name__} {value!r}")


@dataclass
class SubscriptionLoss:
    """What subscribe mode could see of values the server never delivered (counts since start)."""

    flagged: int = 0  # values carrying the Overflow InfoBit: the server discarded at least one before each
    full_queues: int = 0  # an item's queue arrived full (queue_size values in one publish), no Overflow bit
    missing_messages: int = 0  # NotificationMessage sequence numbers skipped (each held >= 1 value)
    status_changes: int = 0  # StatusChangeNotifications: the server ended the subscription
    _next_seq: int | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        """Loss events: what ``health.overflows`` reports."""
        return self.flagged + self.full_queues + self.missing_messages

    def snapshot(self) -> dict[str, int]:
        return {"flagged": self.flagged, "full_queues": self.full_queues,
                "missing_messages": self.missing_messages, "status_changes": self.status_changes}

    def new_subscription(self) -> None:
        """A fresh subscription numbers its messages from its own start."""
        self._next_seq = None

    def on_message(self, msg: ua.NotificationMessage, queue_sizes: Mapping[int, int]) -> None:
        """Account one NotificationMessage; `queue_sizes`: client handle -> requested queue size."""
        self._sequence(int(msg.SequenceNumber), bool(msg.NotificationData))
        for notif in msg.NotificationData or []:
            if isinstance(notif, ua.StatusChangeNotification):
                self.status_changes += 1
            elif isinstance(notif, ua.DataChangeNotification):
                self._datachange(notif, queue_sizes)

    def _sequence(self, seq: int, has_data: bool) -> None:
        if seq == 0:  # not a server message: asyncua's own "connection lost" status (spec numbers start at 1)
            return
        expected = self._next_seq
        if expected is not None and seq > expected:
            self.missing_messages += seq - expected
        # a data message uses its number; a keep-alive carries the next one without using it.
        # A number below the expected one (a wrap at 2^32 or a server restart) restarts the count.
        self._next_seq = seq + 1 if has_data else seq

    def _datachange(self, notif: ua.DataChangeNotification, queue_sizes: Mapping[int, int]) -> None:
        per_item: dict[int, int] = {}
        flagged_items: set[int] = set()
        for item in notif.MonitoredItems:
            per_item[item.ClientHandle] = per_item.get(item.ClientHandle, 0) + 1
            dv = item.Value
            if dv is not None and dv.StatusCode is not None and dv.StatusCode.value & OVERFLOW_BITS == OVERFLOW_BITS:
                self.flagged += 1
                flagged_items.add(item.ClientHandle)
        for handle, n in per_item.items():
            size = queue_sizes.get(handle, 0)
            # queue size 1 (or 0: the server's default) arrives "full" on every change: nothing to learn
            if size > 1 and n >= size and handle not in flagged_items:
                self.full_queues += 1


class _AccountingSubscription(Subscription):
    """An asyncua Subscription that shows every NotificationMessage to the loss accounting
    before asyncua splits it into per-item callbacks (which lose the message boundaries)."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters, handler: Any,
                 on_message: Any) -> None:
        super().__init__(session, params, handler)
        self._on_message = on_message

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        msg = publish_result.NotificationMessage
        if msg is not None and msg.NotificationData is not None:
            sizes = {h: d.queuesize for h, d in self._monitored_items.items()}
            self._on_message(msg, sizes)
        await super().publish_callback(publish_result)


class _Handler:
    """Collects data changes between two emits (the publish loop must never wait on us)."""

    def __init__(self, driver: OpcUaDriver) -> None:
        self.driver = driver
        self.pending: list[Sample] = []
        self.wake = asyncio.Event()

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        dv = data.monitored_item.Value
        tags = self.driver.tags_by_node.get(node.nodeid.to_string(), [])
        now = self.driver.clock()
        for tag in tags:
            self.pending.append(self.driver.to_sample(tag, dv, now))
        self.wake.set()

    def status_change_notification(self, status: Any) -> None:
        self.driver.lost.set()


class OpcUaDriver(Driver):
    kind = "opcua"

    def __init__(self, plc_name: str, plc: Plc, tags: Mapping[str, Signal], **kw: Any) -> None:
        super().__init__(plc_name, plc, tags, **kw)
        assert isinstance(plc, OpcUaPlc)
        self.cfg: OpcUaPlc = plc
        self.addrs: dict[str, ua.NodeId | list[str]] = {}
        errors: list[str] = []
        for name, sig in self.tags.items():
            try:
                self.addrs[name] = parse_address(sig.address)
            except TagError as exc:
                errors.append(f"tag {name}: {exc}")
        sec = plc.security
        if sec.policy != "None":
            if sec.mode == "None":
                errors.append(f"security policy {sec.policy} needs mode Sign or SignAndEncrypt")
            if not sec.certificate or not sec.private_key:
                errors.append(f"security policy {sec.policy} needs certificate and private_key files")
        if plc.username and not plc.password_file:
            errors.append("username needs password_file (passwords are never written into the config)")
        if errors:
            raise TagError(f"plc {plc_name}: " + "; ".join(errors))
        self._client: Client | None = None
        self.nodes: dict[str, Node] = {}  # tag -> resolved node
        self.tag_errors: dict[str, str] = {}  # tag -> why it cannot be read (resolve / subscribe)
        self.tags_by_node: dict[str, list[str]] = {}
        self.lost = asyncio.Event()
        self.read_chunk = plc.read_chunk
        self.requests = 0
        self.loss = SubscriptionLoss()
        self.log = get_logger(plc=plc_name, driver="opcua")
        self._loss_logged = -1e9  # monotonic time of the last loss warning

    # ---------------------------------------------------------------- connection

    async def connect(self) -> None:
        c = self.cfg
        client = Client(c.endpoint, timeout=c.timeout_s, watchdog_intervall=max(0.5, min(2.0, c.timeout_s / 2)))
        self._client = client
        self.lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            self.lost.set()

        client.connection_lost_callback = on_lost
        try:
            await self._configure_security(client)
            if c.username:
                client.set_user(c.username)
                client.set_password(self._password())
            await asyncio.wait_for(client.connect(), c.timeout_s * 2)
        except DriverError:
            raise
        except UaStatusCodeError as exc:
            raise DriverError(self._explain(exc)) from exc
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise DriverError(f"cannot connect to {c.endpoint}: {exc or type(exc).__name__}") from exc
        except (UaError, ValueError, TypeError) as exc:
            raise DriverError(f"cannot connect to {c.endpoint}: {type(exc).__name__}: {exc}") from exc
        await self._resolve(client)

    def _password(self) -> str:
        path = self.cfg.password_file
        assert path is not None
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise DriverError(f"cannot read password_file {path}: {exc.strerror}") from exc

    async def _configure_security(self, client: Client) -> None:
        sec = self.cfg.security
        if sec.policy == "None":
            return
        assert sec.certificate and sec.private_key
        _check_files({"certificate": sec.certificate, "private_key": sec.private_key,
                      "server_certificate": sec.server_certificate})
        from asyncua.crypto import uacrypto

        cert = await uacrypto.load_certificate(sec.certificate)
        uris = _cert_uris(cert)
        if uris:  # the server checks our application URI against our certificate
            client.application_uri = uris[0]
        if sec.server_certificate is not None:
            await self._check_pinned(client, sec.server_certificate, sec.policy, sec.mode)
        await client.set_security(
            _POLICIES[sec.policy], sec.certificate, sec.private_key,
            server_certificate=sec.server_certificate, mode=_MODES[sec.mode],
        )

    async def _check_pinned(self, client: Client, pinned_path: str, policy: str, mode: str) -> None:
        """Refuse a server whose certificate is not the pinned one (before sending anything secret)."""
        from asyncua.crypto import uacrypto
        from cryptography.hazmat.primitives.serialization import Encoding

        pinned = (await uacrypto.load_certificate(pinned_path)).public_bytes(Encoding.DER)
        try:
            endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), self.cfg.timeout_s * 2)
        except (TimeoutError, OSError, ConnectionError, UaError) as exc:
            raise DriverError(f"cannot connect to {self.cfg.endpoint}: {exc or type(exc).__name__}") from exc
        uri = _POLICIES[policy].URI
        offered = [e for e in endpoints if e.SecurityPolicyUri == uri and e.SecurityMode == _MODES[mode]]
        if not offered:
            raise DriverError(f"server {self.cfg.endpoint} offers no endpoint with {policy} {mode}")
        if not any(e.ServerCertificate and e.ServerCertificate.startswith(pinned) for e in offered):
            raise DriverError(
                f"server {self.cfg.endpoint} presents a certificate that is not the pinned "
                f"security.server_certificate {pinned_path}: refusing to connect"
            )

    def _explain(self, exc: UaStatusCodeError) -> str:
        code = getattr(exc, "code", None)
        label = ua.StatusCode(code).name if isinstance(code, int) else str(exc)
        if code in _AUTH_CODES:
            return (f"OPC UA server {self.cfg.endpoint} rejected user {self.cfg.username!r}: wrong username "
                    f"or password ({label})")
        if code in _CERT_CODES:
            return (f"OPC UA server {self.cfg.endpoint} does not trust lineside's certificate "
                    f"{self.cfg.security.certificate} ({label}): add it to the server's trusted certificates")
        return f"OPC UA server {self.cfg.endpoint} refused the session: {label}"

    async def _resolve(self, client: Client) -> None:
        """Node ids as nodes, browse paths looked up once per connection; failures are per tag."""
        self.nodes, self.tag_errors, self.tags_by_node = {}, {}, {}
        for tag, addr in self.addrs.items():
            if isinstance(addr, ua.NodeId):
                node = client.get_node(addr)
            else:
                try:
                    node = await client.nodes.root.get_child(addr)
                except UaStatusCodeError as exc:
                    self.tag_errors[tag] = f"browse path {self.tags[tag].address} not found on the server ({exc})"
                    continue
                except (TimeoutError, OSError, ConnectionError) as exc:
                    raise DriverError(f"connection lost while resolving browse paths: {exc}") from exc
            self.nodes[tag] = node
            self.tags_by_node.setdefault(node.nodeid.to_string(), []).append(tag)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the server may be gone already; closing must never raise
            try:
                client.disconnect_socket()
            except Exception:
                pass

    # ---------------------------------------------------------------- values

    def to_sample(self, tag: str, dv: ua.DataValue | None, now: float) -> Sample:
        sig = self.tags[tag]
        if dv is None:
            return Sample(tag, None, "bad", None, now, f"{sig.address}: no value")
        src = _epoch(dv.SourceTimestamp) or _epoch(dv.ServerTimestamp)
        status = dv.StatusCode or ua.StatusCode()
        severity = status.value >> 30
        if severity >= 2:
            return Sample(tag, None, "bad", src, now, f"{sig.address}: {status.name}")
        raw = dv.Value.Value if dv.Value is not None else None
        try:
            value = self.scaled(_coerce(raw, sig), sig)
        except (TypeError, ValueError) as exc:
            return Sample(tag, None, "bad", src, now, f"{sig.address}: {exc}")
        if value is None:
            return Sample(tag, None, "bad", src, now, f"{sig.address}: no value / not a finite number")
        if severity == 1:
            return Sample(tag, value, "uncertain", src, now, f"{sig.address}: {status.name}")
        return Sample(tag, value, "good", src, now)

    def _tag_error_samples(self) -> list[Sample]:
        now = self.clock()
        return [Sample(t, None, "bad", None, now, e) for t, e in self.tag_errors.items()]

    async def read(self) -> list[Sample]:
        client = self._client
        if client is None or self.lost.is_set():
            raise DriverError(f"connection to {self.cfg.endpoint} lost")
        tags = list(self.nodes)
        out = self._tag_error_samples()
        i = 0
        while i < len(tags):
            chunk = tags[i : i + self.read_chunk]
            try:
                self.requests += 1
                dvs = await client.read_attributes([self.nodes[t] for t in chunk])
            except UaStatusCodeError as exc:
                if exc.code == ua.StatusCodes.BadTooManyOperations and self.read_chunk > 1:
                    self.read_chunk = max(1, self.read_chunk // 2)  # the server's limit is lower
                    continue
                raise DriverError(f"read from {self.cfg.endpoint} failed: {exc}") from exc
            except (TimeoutError, OSError, ConnectionError, UaError) as exc:
                raise DriverError(f"connection to {self.cfg.endpoint} lost: {exc or type(exc).__name__}") from exc
            now = self.clock()
            out.extend(self.to_sample(t, dv, now) for t, dv in zip(chunk, dvs, strict=True))
            i += len(chunk)
        return out

    # ---------------------------------------------------------------- subscribe mode

    async def run(self, emit: Emit, on_state: OnState | None = None) -> None:
        if self.cfg.mode == "poll":
            await super().run(emit, on_state)
            return
        try:
            while True:
                await self._connect_with_backoff(on_state)
                try:
                    await self._subscribed(emit)
                except (TimeoutError, DriverError, OSError, ConnectionError, UaError) as exc:
                    await self._disconnected(exc, emit, on_state)
        finally:
            self.health.connected = False
            await self.close()

    async def _subscribed(self, emit: Emit) -> None:
        client = self._client
        assert client is not None
        handler = _Handler(self)
        sub = await self._create_subscription(client, handler)
        tags = list(self.nodes)
        # one monitored item per node, even when several tags share it
        nodes: dict[str, Node] = {}
        for t in tags:
            nodes.setdefault(self.nodes[t].nodeid.to_string(), self.nodes[t])
        node_list = list(nodes.values())
        for i in range(0, len(node_list), max(1, self.read_chunk)):
            chunk = node_list[i : i + self.read_chunk]
            results = await sub.subscribe_data_change(  # type: ignore[call-overload]
                chunk, queuesize=self.cfg.queue_size, sampling_interval=float(self.cfg.interval_ms) / 2
            )
            for node, res in zip(chunk, results, strict=True):
                if isinstance(res, ua.StatusCode):
                    for t in self.tags_by_node.get(node.nodeid.to_string(), []):
                        self.tag_errors[t] = f"{self.tags[t].address}: cannot subscribe: {res.name}"
        if self.tag_errors:
            errs = self._tag_error_samples()
            self.health.record(errs, self.clock())
            await _call(emit, errs)
        while not self.lost.is_set():
            # emit as soon as a publish response arrived (latency = sampling + publishing only)
            waits = [asyncio.ensure_future(self.lost.wait()), asyncio.ensure_future(handler.wake.wait())]
            try:
                await asyncio.wait(waits, timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            handler.wake.clear()
            if handler.pending:
                batch, handler.pending = handler.pending, []
                self.health.record(batch, self.clock())
                await _call(emit, batch)
        raise DriverError(f"connection to {self.cfg.endpoint} lost")


    async def _create_subscription(self, client: Client, handler: _Handler) -> Subscription:
        """Client.create_subscription's parameters, with the accounting subscription class."""
        period = float(self.cfg.interval_ms)
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=period, RequestedLifetimeCount=10000,
            RequestedMaxKeepAliveCount=client.get_keepalive_count(period), MaxNotificationsPerPublish=10000,
            PublishingEnabled=True, Priority=0,
        )
        self.loss.new_subscription()
        sub = _AccountingSubscription(client.uaclient.session, params, handler, self._account)
        await sub.init()
        return sub

    def _account(self, msg: ua.NotificationMessage, queue_sizes: Mapping[int, int]) -> None:
        before = self.loss.total
        self.loss.on_message(msg, queue_sizes)
        total = self.loss.total
        if total == before:
            return
        self.health.overflows += total - before
        # warn at once on the first loss, then at most every 10 s with the totals (a queue that is
        # too small overflows on every publish; one line per publish would flood the journal)
        now = time.monotonic()
        if now - self._loss_logged >= 10.0:
            self._loss_logged = now
            self.log.warning("subscription_values_lost", endpoint=self.cfg.endpoint, queue_size=self.cfg.queue_size,
                             interval_ms=self.cfg.interval_ms, **self.loss.snapshot())


def _check_files(files: dict[str, str | None]) -> None:
    for label, p in files.items():
        if p is not None and not Path(p).is_file():
            raise DriverError(f"security.{label} file {p} does not exist")


def _cert_uris(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))
