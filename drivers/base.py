"""The one small interface every protocol driver implements.

A driver owns one PLC connection and a set of tags (name -> config.models.Signal; the name is
the role the edge gave the tag, e.g. ``total_count`` or ``process.seal_temp_c``). It yields
typed :class:`Sample` s, reconnects on its own with capped, jittered backoff, and keeps a
:class:`DriverHealth` for the status page and metrics.

Poll-style drivers implement ``connect`` / ``read`` / ``close`` and inherit :meth:`Driver.run`;
subscription-style drivers (OPC UA subscribe mode) override ``run``.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential_jitter

from config.models import Plc, Signal

Quality = Literal["good", "bad", "uncertain"]
Value = bool | int | float | str | None


class Sample(msgspec.Struct, gc=False):
    """One value of one tag, as read from the PLC."""

    tag: str
    value: Value
    quality: Quality
    source_ts: float | None  # epoch seconds stamped by the PLC / server, when it gives one
    recv_ts: float  # epoch seconds (the driver's clock) when lineside received it
    error: str | None = None  # why the quality is not good: per-tag text a person can act on


class DriverError(Exception):
    """A connection-level failure (the whole PLC, not one tag)."""


class TagError(Exception):
    """A tag-level failure: wrong address, wrong type. The other tags keep flowing."""


@dataclass
class DriverHealth:
    connected: bool = False
    last_error: str | None = None
    last_error_ts: float | None = None
    connects: int = 0
    reconnects: int = 0
    reads: int = 0  # read requests (polls) or notification batches
    samples: int = 0
    bad_samples: int = 0
    bad_by_tag: dict[str, int] = field(default_factory=dict)
    overflows: int = 0  # subscription queue overflows (values the server had to drop)
    last_sample_ts: float | None = None
    _window: list[tuple[float, int]] = field(default_factory=list, repr=False)

    def record(self, samples: list[Sample], now: float) -> None:
        self.reads += 1
        self.samples += len(samples)
        for s in samples:
            if s.quality != "good":
                self.bad_samples += 1
                self.bad_by_tag[s.tag] = self.bad_by_tag.get(s.tag, 0) + 1
        self.last_sample_ts = now
        self._window.append((now, len(samples)))
        while self._window and now - self._window[0][0] > 10.0:
            self._window.pop(0)

    def values_per_s(self, now: float) -> float:
        recent = [n for t, n in self._window if now - t <= 10.0]
        return sum(recent) / 10.0 if recent else 0.0

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "connected": self.connected,
            "last_error": self.last_error,
            "last_error_ts": self.last_error_ts,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "reads": self.reads,
            "samples": self.samples,
            "bad_samples": self.bad_samples,
            "bad_by_tag": dict(self.bad_by_tag),
            "overflows": self.overflows,
            "values_per_s": self.values_per_s(now),
        }


Emit = Callable[[list[Sample]], Awaitable[None] | None]
OnState = Callable[[bool, str | None], Awaitable[None] | None]


async def _call(fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    res = fn(*args)
    if asyncio.iscoroutine(res):
        await res


class Driver(abc.ABC):
    """Base class: one PLC connection, a set of tags, a reconnecting poll loop."""

    kind: ClassVar[str]

    def __init__(
        self,
        plc_name: str,
        plc: Plc,
        tags: Mapping[str, Signal],
        *,
        clock: Callable[[], float] = time.time,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.plc_name = plc_name
        self.plc = plc
        self.tags = dict(tags)
        self.clock = clock
        self.health = DriverHealth()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s

    @property
    def interval_s(self) -> float:
        return float(getattr(self.plc, "interval_ms", 500)) / 1000.0

    # -- what a protocol implements -------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection once; raise DriverError saying why it failed."""

    @abc.abstractmethod
    async def read(self) -> list[Sample]:
        """Read every tag once. A tag that fails gives a bad-quality Sample with `error`;
        a connection failure raises DriverError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; never raises."""

    # -- shared behaviour -------------------------------------------------------------

    def bad_samples(self, error: str, tags: list[str] | None = None) -> list[Sample]:
        now = self.clock()
        return [Sample(t, None, "bad", None, now, error) for t in (tags if tags is not None else self.tags)]

    @staticmethod
    def scaled(value: Any, sig: Signal) -> Value:
        """Apply scale/offset to numbers; NaN or inf becomes None (the caller marks it bad)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if sig.scale == 1.0 and sig.offset == 0.0:
            return value
        return value * sig.scale + sig.offset

    async def _connect_with_backoff(self, on_state: OnState | None) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((DriverError, OSError, asyncio.TimeoutError)),
            wait=wait_exponential_jitter(multiplier=self.backoff_initial_s, max=self.backoff_max_s, jitter=self.backoff_initial_s),
            stop=stop_never,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    await self.connect()
                except (TimeoutError, DriverError, OSError) as exc:
                    self._failed(str(exc) or type(exc).__name__)
                    await self.close()
                    raise
        if self.health.connects:
            self.health.reconnects += 1
        self.health.connects += 1
        self.health.connected = True
        await _call(on_state, True, None)

    async def _disconnected(self, exc: BaseException, emit: Emit, on_state: OnState | None) -> None:
        """The connection is gone: close it, give every tag one bad sample (the edge sees the
        gap at once) and report the state; the caller then reconnects with backoff."""
        error = str(exc) or type(exc).__name__
        self._failed(error)
        await self.close()
        bad = self.bad_samples(f"disconnected: {error}")
        self.health.record(bad, self.clock())
        await _call(emit, bad)
        await _call(on_state, False, error)

    def _failed(self, error: str) -> None:
        self.health.connected = False
        self.health.last_error = error
        self.health.last_error_ts = self.clock()

    async def run(self, emit: Emit, on_state: OnState | None = None) -> None:
        """Poll every `interval_ms` forever (until cancelled), reconnecting on failure.

        On a connection failure every tag gets one bad-quality sample (so the edge sees the gap
        at once), `on_state(False, error)` is called, and the driver reconnects with backoff.
        """
        try:
            while True:
                await self._connect_with_backoff(on_state)
                next_t = time.monotonic()
                try:
                    while True:
                        samples = await self.read()
                        self.health.record(samples, self.clock())
                        await _call(emit, samples)
                        next_t += self.interval_s
                        delay = next_t - time.monotonic()
                        if delay < 0:  # overrun: do not try to catch up with a burst
                            next_t = time.monotonic()
                            delay = 0
                        await asyncio.sleep(delay)
                except (TimeoutError, DriverError, OSError) as exc:
                    await self._disconnected(exc, emit, on_state)
        finally:
            self.health.connected = False
            await self.close()


# ---------------------------------------------------------------- request coalescing


def merge_spans(items: list[tuple[int, int, str]], gap: int, span: int) -> list[tuple[int, int, list[str]]]:
    """Coalesce (start, size, tag) items, sorted by start, into (start, size, tags) reads.

    A neighbour joins the current read when at most `gap` units lie between them and the read
    stays within `span` units; overlapping items always share. An item bigger than `span` is a
    read of its own. Modbus (registers, bits) and S7 (bytes) plan their requests with it.
    """
    out: list[tuple[int, int, list[str]]] = []
    for start, size, tag in items:
        if out:
            cur_start, cur_size, tags = out[-1]
            cur_end, end = cur_start + cur_size, start + size
            if start - cur_end <= gap and max(end, cur_end) - cur_start <= span:
                out[-1] = (cur_start, max(end, cur_end) - cur_start, tags)
                tags.append(tag)
                continue
        out.append((start, size, [tag]))
    return out


# ---------------------------------------------------------------- registry

DriverFactory = Callable[..., Driver]
_REGISTRY: dict[str, str] = {
    # driver name in the config -> "module:class"; imported on first use so a line that only
    # speaks Modbus never loads asyncua.
    "opcua": "drivers.opcua:OpcUaDriver",
    "modbus": "drivers.modbus:ModbusDriver",
    "enip": "drivers.enip:EnipDriver",
    "s7": "drivers.s7:S7Driver",
    "sim": "drivers.sim:SimDriver",
}


def driver_class(kind: str) -> type[Driver]:
    import importlib

    modname, clsname = _REGISTRY[kind].split(":")
    cls: type[Driver] = getattr(importlib.import_module(modname), clsname)
    return cls


def create_driver(plc_name: str, plc: Plc, tags: Mapping[str, Signal], **kw: Any) -> Driver:
    """The driver for `plc` (by its `driver:` key) reading `tags`."""
    kind = type(plc).__struct_config__.tag
    assert isinstance(kind, str)
    return driver_class(kind)(plc_name, plc, tags, **kw)
