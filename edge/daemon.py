"""`lineside run LINE.yaml`: the per-line edge daemon.

One asyncio program per line, one TaskGroup: a task per PLC driver, the processor's tick loop,
the status page, the systemd watchdog and signal handling. Nothing is fire-and-forget: when a
task fails the group cancels the others and the daemon exits non-zero, so systemd restarts it.

Data flow: driver → `on_samples` (fed to the processor at once) → `tick` every 0.5 s (records
from the processor, historized samples) → buffer (committed in batches by the buffer).
Time: every sample and record is stamped from the `LineClock` (monotonic, anchored to UTC once),
so a wall-clock step neither creates nor eats a stop.
SIGTERM/SIGINT: stop reading, close out open records, flush the buffer, exit within 5 s.
SIGHUP: reload the config; a bad new config is logged (and recorded as an event), the old one kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec

from buffer import LineBuffer
from config import ConfigError, LineConfig, load_line_config
from config.models import MtbfDropRule, Signal
from drivers.base import Driver, Sample, create_driver
from edge import notify
from edge.clock import LineClock, SourceTimeMapper
from edge.followup import FollowUpEngine
from edge.logs import get_logger
from edge.processor import LineProcessor
from sync.records import EventRecord, KpiRecord, Record, SampleRecord, StopRecord, format_ts, natural_id

__all__ = ["LineDaemon", "cli_run", "group_tags"]

TICK_S = 0.5
PUBLISH_S = 1.0
SHUTDOWN_BUDGET_S = 4.0
KEEP_STOPS = 200


def group_tags(cfg: LineConfig) -> dict[str, dict[str, Signal]]:
    """Signals by PLC name, each keyed by its role (`total_count`, `process.seal_temp_c`)."""
    out: dict[str, dict[str, Signal]] = {}
    for role, sig in cfg.signals.roles().items():
        out.setdefault(sig.plc, {})[role] = sig
    return out


class _Shutdown(Exception):
    pass


class _Reload(Exception):
    def __init__(self, cfg: LineConfig) -> None:
        super().__init__("reload")
        self.cfg = cfg


class LineDaemon:
    """The wiring of one line; owns no protocol or KPI logic itself."""

    def __init__(
        self,
        cfg: LineConfig,
        config_path: str | None = None,
        *,
        clock: LineClock | None = None,
        status_listen: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.clock = clock or LineClock()
        self.status_listen = status_listen or cfg.status.listen
        self.status_url: str | None = None
        self.log = get_logger(line=cfg.line.id)
        self.drivers: dict[str, Driver] = {}
        self._mappers: dict[str, SourceTimeMapper] = {}
        self._connecting: dict[str, float] = {}  # PLC -> when it was last lost; connected at first data
        self._disconnected_at: dict[str, float] = {}
        self.buffer: LineBuffer | None = None
        self.processor = LineProcessor(cfg)
        self.followup = FollowUpEngine(cfg)
        self._sample_prefix = self._sample_prefixes(cfg)
        self._pending: list[Record] = []
        # A tag's n-th sample within one millisecond gets its ordinal in its id (see on_samples):
        # tag -> the ms (as text) of its last sample; tag -> (that ms, ordinal) once it repeats.
        self._sample_ms: dict[str, str] = {}
        self._sample_burst: dict[str, tuple[str, int]] = {}
        self._event_seq = 0
        self._stops: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stop_category: dict[str, str] = {}
        self._kpis: dict[tuple[str, str], dict[str, Any]] = {}
        self._last_tick_mono = time.monotonic()
        self._stop_ev = asyncio.Event()
        self._reload_ev = asyncio.Event()
        self.ready = asyncio.Event()
        from edge.status import LineMetrics, SnapshotProvider

        self.metrics = LineMetrics(cfg.line.id)
        from edge.reasons import EdgeReasons

        self.reasons = EdgeReasons(self)  # reasons set later (status page, central store) and central context
        self.provider = SnapshotProvider(self._status_doc(), reasons=self._reasons(),
                                         on_reason=self.reasons.on_operator_reason)

    @staticmethod
    def _historized_roles(cfg: LineConfig) -> set[str]:
        return {role for role, sig in cfg.signals.roles().items() if sig.historize}

    @classmethod
    def _sample_prefixes(cls, cfg: LineConfig) -> dict[str, str]:
        """Historized tag -> the start of its sample ids (``natural_id(line, "sample", tag, ms)``
        is this prefix followed by the ms)."""
        return {role: natural_id(cfg.line.id, "sample", role, "") for role in cls._historized_roles(cfg)}

    # ------------------------------------------------------------------ records

    def _identity(self) -> dict[str, Any]:
        ln = self.cfg.line
        return {"site": ln.site, "area": ln.area, "line": ln.id, "machine": ln.machine}

    def event(self, kind: str, **detail: Any) -> EventRecord:
        now = self.clock.now()
        self._event_seq += 1
        return EventRecord(
            id=natural_id(self.cfg.line.id, "event", kind, round(now * 1000), self._event_seq),
            ts=format_ts(now),
            kind=kind,
            detail={k: v for k, v in detail.items() if v is not None},
            **self._identity(),
        )

    async def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self._observe(records)
        assert self.buffer is not None
        await self.buffer.append(records)

    def _observe(self, records: Sequence[Record]) -> None:
        """Keep what the status page shows: the latest revision of recent stops and KPIs."""
        for r in records:
            if r.__class__ is SampleRecord:  # most records, and none the page shows
                continue
            if isinstance(r, StopRecord):
                self._stops[r.id] = msgspec.to_builtins(r)
                self._stops.move_to_end(r.id)
                while len(self._stops) > KEEP_STOPS:
                    self._stops.popitem(last=False)
                if r.end is not None:
                    self._stop_category[r.id] = r.category
            elif isinstance(r, KpiRecord):
                self._kpis[(r.interval, r.start)] = msgspec.to_builtins(r)

    # ------------------------------------------------------------------ driver callbacks

    def on_samples(self, samples: list[Sample]) -> None:
        self.processor.feed(samples)
        self.followup.observe_samples(samples)
        prefixes = self._sample_prefix
        if not prefixes:
            return
        # The per-value path of the daemon: everything that is the same for a whole read (the
        # identity, a tag's id prefix, a timestamp's text) is looked up, not rebuilt, per value.
        ln = self.cfg.line
        site, area, line, machine = ln.site, ln.area, ln.id, ln.machine
        last_ms, bursts = self._sample_ms, self._sample_burst
        append = self._pending.append
        isfinite = math.isfinite
        # A read's samples share their timestamps: format each once (formatting was the
        # largest single cost of a historized sample). recv_ts -> (RFC 3339 text, ms as text).
        stamps: dict[float, tuple[str, str]] = {}
        for s in samples:
            tag = s.tag
            prefix = prefixes.get(tag)
            if prefix is None:
                continue
            value = s.value
            if isinstance(value, float) and not isfinite(value):
                value = None
            recv = s.recv_ts
            stamp = stamps.get(recv)
            if stamp is None:
                stamp = stamps[recv] = (format_ts(recv), str(round(recv * 1000)))
            ts, ms = stamp
            src_text = None
            if s.source_ts is not None:
                src = stamps.get(s.source_ts)
                if src is None:
                    src = stamps[s.source_ts] = (format_ts(s.source_ts), str(round(s.source_ts * 1000)))
                src_text = src[0]
            # A tag can change more than once in a millisecond (a PLC catching up after a
            # stall, a burst of queued notifications): the n-th sample in it gets its ordinal
            # in the id, or the buffer would take it for the first one sent again and keep one.
            if last_ms.get(tag) == ms:
                burst = bursts.get(tag)
                n = burst[1] + 1 if burst is not None and burst[0] == ms else 1
                bursts[tag] = (ms, n)
                rid = f"{prefix}{ms}:{n}"
            else:
                last_ms[tag] = ms
                rid = prefix + ms
            append(
                SampleRecord(
                    id=rid, ts=ts, tag=tag, value=value, quality=s.quality, source_ts=src_text,
                    site=site, area=area, line=line, machine=machine,
                )
            )

    def _emit_for(self, plc: str) -> Any:
        """The driver's emit callback. Stamps samples from the PLC's source clock when the
        config asks for it (`timestamps: source`), and marks the PLC connected at the time of
        its first data after a (re)connect, in the same time base as that data (with source
        timestamps the first value can be stamped a little before the socket came up)."""
        mapper: SourceTimeMapper | None = None
        if self.cfg.plcs[plc].timestamps == "source":
            mapper = self._mappers[plc] = SourceTimeMapper()

        def emit(samples: list[Sample]) -> None:
            if mapper is not None:
                steps = mapper.steps
                for s in samples:
                    s.recv_ts = mapper.map(s.source_ts, s.recv_ts)
                if mapper.steps != steps:
                    self.log.warning("plc_clock_stepped", plc=plc, offset_s=round(mapper.offset or 0.0, 3))
            if plc in self._connecting and samples:
                since = self._connecting.pop(plc)
                self.processor.set_connected(max(since, min(s.recv_ts for s in samples)), True, plc)
            self.on_samples(samples)

        return emit

    def _on_state(self, plc: str) -> Any:
        def on_state(connected: bool, error: str | None) -> None:
            if connected:
                # Applied with the first data (see _emit_for): until then the time is unknown.
                self._connecting[plc] = self._disconnected_at.get(plc, float("-inf"))
                self.log.info("plc_connected", plc=plc)
            else:
                self._connecting.pop(plc, None)
                now = self.clock.now()
                self._disconnected_at[plc] = now
                self.processor.set_connected(now, False, plc, error)
                self.log.warning("plc_disconnected", plc=plc, error=error)

        return on_state

    # ------------------------------------------------------------------ status page

    def _reasons(self) -> list[Any]:
        return [
            {"code": code, "text": r.text, "category": r.category, "planned": r.planned}
            for code, r in self.cfg.production.reasons.items()
        ]

    def _status_doc(self) -> Any:
        now = self.clock.now()
        ln = self.cfg.line
        snap = self.processor.snapshot(now)
        since = snap.get("state_since")
        open_stop = next((s for s in snap.get("last_stops", []) if s.get("end") is None), None)
        state = {
            "state": snap.get("state", "unknown"),
            "since": since,
            "duration_s": None,
            "reason_code": open_stop.get("reason_code") if open_stop else None,
            "reason_text": open_stop.get("reason_text") if open_stop else None,
            "stop_id": open_stop.get("id") if open_stop else None,
        }
        if since is not None:
            from sync.records import parse_ts

            state["duration_s"] = round(max(0.0, now - parse_ts(since)), 1)
        shift = {
            "name": snap.get("shift"),
            "start": snap.get("shift_start"),
            "end": snap.get("shift_end"),
            "availability": snap.get("availability"),
            "performance": snap.get("performance"),
            "quality": snap.get("quality"),
            "oee": snap.get("oee"),
            "total_count": snap.get("total", 0),
            "good_count": snap.get("good", 0),
            "reject_count": snap.get("reject", 0),
            "target_count": snap.get("target"),
            "plan_count": None,
        }
        plcs = {}
        for name, drv in self.drivers.items():
            h = drv.health.snapshot(now)
            plcs[name] = {
                "driver": type(self.cfg.plcs[name]).__struct_config__.tag,
                "connected": h["connected"],
                "last_error": h["last_error"],
                "values_per_s": round(h["values_per_s"], 1),
                "samples_total": h["samples"],
                "bad_samples": h["bad_samples"],
                "reconnects": h["reconnects"],
                "last_sample_age_s": None
                if drv.health.last_sample_ts is None
                else round(now - drv.health.last_sample_ts, 1),
            }
        stats = self.buffer.stats() if self.buffer is not None else {}
        by_cat: dict[str, int] = {}
        for cat in self._stop_category.values():
            by_cat[cat] = by_cat.get(cat, 0) + 1
        return {
            "line": {
                "site": ln.site, "area": ln.area, "id": ln.id, "machine": ln.machine,
                "name": ln.name or ln.id, "timezone": self.cfg.timezone,
            },
            "now": format_ts(now),
            "state": state,
            "shift": shift,
            "timeline": snap.get("timeline", []),
            "plcs": plcs,
            "buffer": {
                "bytes": stats.get("bytes_on_disk", 0),
                "unsent": stats.get("unsent", 0),
                "oldest_unsent_age_s": stats.get("oldest_unsent_age_s"),
                "full": bool(stats.get("full", False)),
                "quarantined": stats.get("quarantined", 0),
                # More values than this PC writes: raw samples are being shed (buffer/README.md).
                "overloaded": bool(stats.get("overloaded", False)),
                "dropped": sum((stats.get("dropped") or {}).values()),
            },
            "sync": {
                "lag_s": stats.get("oldest_unsent_age_s"),
                "last_ack": None,
                # The agent is another process: the buffer's outbox shows whether it keeps up.
                "state": _sync_state(stats),
            },
            "stops_by_category": by_cat,
        }

    def publish(self) -> None:
        doc = self._status_doc()
        stops = list(reversed(self._stops.values()))
        kpis = [self._kpis[k] for k in sorted(self._kpis, key=lambda k: k[1])[-20:]]
        self.provider.publish(doc, stops=stops, kpis=kpis)
        self.metrics.update(doc)

    # ------------------------------------------------------------------ tasks

    async def _tick_loop(self) -> None:
        last_step_report = -1e9
        next_tick = time.monotonic()
        while True:
            self._last_tick_mono = time.monotonic()
            now = self.clock.now()
            records: list[Record] = list(self.processor.tick(now))
            records += self.followup.observe(records)
            records += self.followup.tick(now)
            if self._pending:
                records.extend(self._pending)
                self._pending = []
            step = self.clock.stepped()
            if step is not None and time.monotonic() - last_step_report > 3600:
                # The wall clock moved under us (NTP, an operator). Durations stay on the
                # monotonic clock; record timestamps keep the anchor until the next restart.
                last_step_report = time.monotonic()
                self.log.warning("wall_clock_stepped", offset_s=round(step, 3))
                records.append(self.event("clock_step", offset_s=round(step, 3)))
            await self.write(records)
            # Every TICK_S, not TICK_S after the work: on a busy line the work takes a good part
            # of a tick, and a longer period would hold every record back longer. After an
            # overrun the cadence starts again from now (no burst of ticks to catch up).
            next_tick += TICK_S
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)

    async def _publish_loop(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:  # the page must never take the line down
                self.log.exception("status_publish_failed")
            await asyncio.sleep(PUBLISH_S)

    def healthy(self) -> bool:
        """For the watchdog: the tick loop ran recently (the event loop is not wedged)."""
        return time.monotonic() - self._last_tick_mono < 10 * TICK_S + 5

    async def _status_server(self) -> None:
        from edge.status import create_app, is_loopback_listen, load_token, serve

        token = load_token(self.cfg.status.token_file) if self.cfg.status.token_file else None
        app = create_app(
            self.provider, token=token, require_token=not is_loopback_listen(self.status_listen),
            metrics=self.metrics,
        )

        def started(url: str) -> None:
            self.status_url = url
            self.log.info("status_page_ready", url=url)

        await serve(app, self.status_listen, on_started=started)

    async def _signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, ev in ((signal.SIGTERM, self._stop_ev), (signal.SIGINT, self._stop_ev), (signal.SIGHUP, self._reload_ev)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, ev.set)
        while True:
            waiters = {asyncio.ensure_future(self._stop_ev.wait()), asyncio.ensure_future(self._reload_ev.wait())}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            if self._stop_ev.is_set():
                self.log.info("shutdown_requested")
                raise _Shutdown
            self._reload_ev.clear()
            new = await self._load_new_config()
            if new is not None:
                raise _Reload(new)

    def request_stop(self) -> None:
        self._stop_ev.set()

    async def _load_new_config(self) -> LineConfig | None:
        """SIGHUP: validate the file again; keep the running config when it is bad."""
        if self.config_path is None:
            return None
        notify.notify_reloading()
        try:
            new = load_line_config(self.config_path)
        except ConfigError as exc:
            self.log.error("config_reload_rejected", errors=str(exc))
            await self.write([self.event("config_rejected", file=self.config_path, errors=str(exc)[:2000])])
            notify.notify_ready()
            return None
        if msgspec.structs.asdict(new) == msgspec.structs.asdict(self.cfg):
            self.log.info("config_unchanged")
            notify.notify_ready()
            return None
        if new.buffer.path != self.cfg.buffer.path or new.line.id != self.cfg.line.id:
            self.log.error("config_reload_rejected", errors="line id and buffer path change only with a restart")
            await self.write([self.event("config_rejected", file=self.config_path, errors="line.id/buffer.path changed")])
            notify.notify_ready()
            return None
        return new

    # ------------------------------------------------------------------ lifecycle

    # A buffer migration that copies the records table took about 2 s per 100 MiB on the
    # development machine; an industrial PC's flash can be ten times slower.
    MIGRATION_S_PER_MIB = 0.2
    MIGRATION_BASE_S = 60.0

    def _migrating(self, nbytes: int) -> None:
        mib = nbytes / 2**20
        allow_s = self.MIGRATION_BASE_S + self.MIGRATION_S_PER_MIB * mib
        self.log.warning("buffer_migrating", path=self.cfg.buffer.path, copy_mib=round(mib, 1),
                         start_timeout_extended_s=round(allow_s))
        notify.notify_extend_timeout(allow_s, f"line {self.cfg.line.id}: migrating the buffer ({mib:.0f} MiB)")

    async def run(self) -> int:
        if self.clock.scale != 1.0:
            self.log.warning("time_scaled_for_simulation", scale=self.clock.scale)
        self.buffer = await LineBuffer.open(self.cfg.buffer, self.cfg.line, on_migration_copy=self._migrating)
        await self._warm_start()
        try:
            await self.write([self.event("config_loaded", file=self.config_path, version=_version())])
            while True:
                try:
                    await self._run_group()
                except BaseExceptionGroup as group:
                    others = group.split((_Shutdown, _Reload))[1]
                    if others is not None:
                        raise others from None
                    if group.subgroup(_Shutdown) is not None:
                        break
                    reload = group.subgroup(_Reload)
                    assert reload is not None
                    exc = reload.exceptions[0]
                    assert isinstance(exc, _Reload)
                    await self._apply(exc.cfg)
                    notify.notify_ready()
            return 0
        finally:
            notify.notify_stopping()
            await self._shutdown()

    async def _warm_start(self) -> None:
        """Give the follow-up rules their history back after a restart: stops for the MTBF
        baseline, recent counts and events for the sliding windows, and the requests and
        alerts still open (so they are revised, not re-created under a new id)."""
        assert self.buffer is not None
        now = self.clock.now()
        days = max(
            (r.baseline_days for r in self.cfg.follow_up.maintenance if isinstance(r, MtbfDropRule)), default=1.0
        )
        history = await self.buffer.history(("stop",), now - days * 86400)
        history += await self.buffer.history(("count", "event"), now - 6 * 3600)
        history += await self.buffer.history(("maintenance_request", "quality_alert"), now - 90 * 86400)
        if history:
            self.followup.restore(history)
            self.log.info("follow_up_restored", records=len(history))
        # the KPI intervals still open go on from their pre-restart part (same id, higher rev)
        kpis = await self.buffer.history(("kpi",), now - 2 * 86400)
        if kpis:
            self.processor.carry_in(kpis)
            self.log.info("kpi_carried_in", records=len(kpis))

    async def _apply(self, new: LineConfig) -> None:
        """A validated new config: drivers are recreated; the processor too when the rules of
        the numbers changed (its open intervals are closed out at this instant)."""
        rules_changed = any(
            msgspec.structs.asdict(getattr(new, k)) != msgspec.structs.asdict(getattr(self.cfg, k))
            for k in ("production", "calendar", "kpi", "signals")
        ) or new.timezone != self.cfg.timezone
        reasons_only = rules_changed and _without_reasons(new) == _without_reasons(self.cfg)
        if reasons_only:
            # New reason texts/categories only: the processor keeps its streams. A new one would
            # start the running intervals over at revision 0 (the buffer keeps the higher
            # revision, so the parts made before the reload or after it would be lost).
            self.processor.cfg, self.processor.prod = new, new.production
        elif rules_changed:
            closing = list(self.processor.finish(self.clock.now()))
            await self.write(closing + self.followup.observe(closing))
            self.processor = LineProcessor(new)
            # The open intervals go on under the new rules: what was measured so far is carried
            # in, as after a restart, instead of starting them again at the reload.
            self.processor.carry_in([r for r in closing if isinstance(r, KpiRecord)])
        if msgspec.structs.asdict(new.follow_up) != msgspec.structs.asdict(self.cfg.follow_up):
            await self.write(self.followup.flush(self.clock.now()))
            self.followup = FollowUpEngine(new)
        self.cfg = new
        self._sample_prefix = self._sample_prefixes(new)
        self.provider = type(self.provider)(self._status_doc(), reasons=self._reasons(),
                                            on_reason=self.reasons.on_operator_reason)
        self.log.info("config_reloaded", processor_restarted=rules_changed and not reasons_only)
        await self.write([self.event("config_loaded", file=self.config_path, reload=True)])

    async def _run_group(self) -> None:
        self.drivers = {
            name: create_driver(name, self.cfg.plcs[name], tags, clock=self.clock.now)
            for name, tags in group_tags(self.cfg).items()
        }
        async with asyncio.TaskGroup() as tg:
            for name, drv in self.drivers.items():
                tg.create_task(
                    _cancel_firmly(drv.run(self._emit_for(name), self._on_state(name))), name=f"driver:{name}"
                )
            tg.create_task(self._tick_loop(), name="tick")
            tg.create_task(self._publish_loop(), name="publish")
            tg.create_task(notify.run_watchdog(self.healthy), name="watchdog")
            tg.create_task(self._status_server(), name="status")
            tg.create_task(self._signals(), name="signals")
            tg.create_task(self.reasons.run(), name="reasons")
            # READY only once config, buffer and every component are up (Type=notify).
            await asyncio.sleep(0)
            notify.notify_ready(f"line {self.cfg.line.id}: running")
            self.ready.set()

    async def _shutdown(self) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_BUDGET_S):
                if self.buffer is None:
                    return
                now = self.clock.now()
                records = list(self.processor.finish(now))
                records += self.followup.observe(records)
                records += self.followup.flush(now)
                records.extend(self._pending)
                self._pending = []
                records.append(self.event("daemon_stopped"))
                await self.write(records)
                await self.reasons.close()
                await self.buffer.close()
        except TimeoutError:
            self.log.error("shutdown_flush_timeout", budget_s=SHUTDOWN_BUDGET_S)


def _without_reasons(cfg: LineConfig) -> dict[str, Any]:
    """What the processor's streams depend on: the rules of the numbers, reasons left out."""
    rules: dict[str, Any] = {k: msgspec.structs.asdict(getattr(cfg, k)) for k in ("calendar", "kpi", "signals")}
    rules["production"] = {k: v for k, v in msgspec.structs.asdict(cfg.production).items() if k != "reasons"}
    rules["timezone"] = cfg.timezone
    return rules


async def _cancel_firmly(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` as its own task; when cancelled, cancel it until it has really stopped.

    Python 3.11's `asyncio.wait_for` swallows a cancellation that arrives in the same loop
    iteration as the awaited answer (CPython gh-86296). pymodbus awaits every reply that way,
    so at a fast poll rate a cancelled driver could keep polling forever and the TaskGroup -
    a SIGHUP reload, a SIGTERM shutdown - would never finish. `asyncio.wait` never swallows.
    """
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait({task})
    except asyncio.CancelledError:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        raise
    task.result()


SYNC_BEHIND_S = 120.0


def _sync_state(stats: dict[str, Any]) -> str:
    """`ok` while the sync agent keeps up (nothing unsent, or the oldest unsent record younger
    than SYNC_BEHIND_S); `unknown` when records wait longer (agent down, network, store)."""
    age = stats.get("oldest_unsent_age_s")
    if not stats.get("unsent") or (age is not None and age < SYNC_BEHIND_S):
        return "ok"
    return "unknown"


def _version() -> str:
    from edge.cli import version

    return version()


def cli_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_line_config(args.line_config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 2
    log = get_logger(line=cfg.line.id)
    log.info("daemon_starting", config=args.line_config)
    daemon = LineDaemon(cfg, config_path=args.line_config)
    try:
        return asyncio.run(daemon.run())
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.exception("daemon_failed", error=str(exc))
        return 1
