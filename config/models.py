"""The line config (/etc/lineside/lines/LINE.yaml) as msgspec Structs.

One definition serves validation, defaults and the JSON Schema. Field names are what a plant
engineer writes; see config/examples/line.yaml.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct, field

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
PositiveInt = Annotated[int, Meta(gt=0)]
Port = Annotated[int, Meta(ge=1, le=65535)]
IntervalMs = Annotated[int, Meta(ge=10, le=3_600_000)]
CLOCK_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
ClockTime = Annotated[str, Meta(pattern=CLOCK_PATTERN, description="HH:MM, 24-hour clock")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

SignalType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
COUNTER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")
ByteOrder = Literal["big", "little"]
# Which clock stamps a PLC's samples: `receive` (the edge's monotonic line clock, the default)
# or `source` (the PLC's / server's source timestamps, e.g. OPC UA SourceTimestamp, shifted by
# the measured PLC-clock offset so records stay on the line clock; exact event spacing even
# when notifications arrive in batches).
Timestamps = Literal["receive", "source"]


class _Base(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Every config Struct rejects unknown keys, so a typo never goes unnoticed."""


# ---------------------------------------------------------------- line identity


class LineIdentity(_Base):
    site: Annotated[str, Meta(min_length=1)]
    area: Annotated[str, Meta(min_length=1)]
    id: Annotated[str, Meta(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    machine: Annotated[str, Meta(min_length=1)]
    name: str = ""


# ---------------------------------------------------------------- PLC connections


class OpcUaSecurity(_Base):
    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None


class OpcUaPlc(_Base, tag_field="driver", tag="opcua"):
    endpoint: Annotated[str, Meta(pattern=r"^opc\.tcp://", description="opc.tcp://host:port[/path]")]
    mode: Literal["subscribe", "poll"] = "subscribe"
    timestamps: Timestamps = "receive"
    interval_ms: IntervalMs = 500
    security: OpcUaSecurity = field(default_factory=OpcUaSecurity)
    username: str | None = None
    password_file: str | None = None
    queue_size: Annotated[int, Meta(ge=1, le=100_000)] = 100
    read_chunk: Annotated[int, Meta(ge=1, le=10_000)] = 500
    timeout_s: Positive = 4.0


class ModbusPlc(_Base, tag_field="driver", tag="modbus"):
    host: str | None = None
    port: Port = 502
    unit: Annotated[int, Meta(ge=0, le=255)] = 1
    timestamps: Timestamps = "receive"
    interval_ms: IntervalMs = 500
    word_order: ByteOrder = "big"
    byte_order: ByteOrder = "big"
    max_gap: Annotated[int, Meta(ge=0, le=124)] = 8
    timeout_s: Positive = 2.0
    transport: Literal["tcp", "rtu"] = "tcp"
    serial_port: str | None = None
    baudrate: PositiveInt = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1


class EnipPlc(_Base, tag_field="driver", tag="enip"):
    host: str
    port: Port = 44818
    route: str | None = None
    timestamps: Timestamps = "receive"
    interval_ms: IntervalMs = 500
    upload_tags: bool = False
    timeout_s: Positive = 4.0


class S7Plc(_Base, tag_field="driver", tag="s7"):
    host: str
    port: Port = 102
    rack: Annotated[int, Meta(ge=0, le=7)] = 0
    slot: Annotated[int, Meta(ge=0, le=31)] = 1
    timestamps: Timestamps = "receive"
    interval_ms: IntervalMs = 500
    timeout_s: Positive = 4.0
    max_gap: Annotated[int, Meta(ge=0, le=256)] = 16  # bytes a merged read may span between tags


class SimPlc(_Base, tag_field="driver", tag="sim"):
    scenario: str = "demo"
    timestamps: Timestamps = "receive"
    interval_ms: IntervalMs = 100
    speed: Positive = 1.0


Plc = OpcUaPlc | ModbusPlc | EnipPlc | S7Plc | SimPlc


# ---------------------------------------------------------------- signals


class Signal(_Base):
    plc: str
    address: Annotated[str, Meta(min_length=1)]
    type: SignalType
    scale: float = 1.0
    offset: float = 0.0
    historize: bool = False
    length: Annotated[int, Meta(ge=1, le=1024)] | None = None
    word_order: ByteOrder | None = None
    byte_order: ByteOrder | None = None


class Signals(_Base):
    total_count: Signal | None = None
    good_count: Signal | None = None
    reject_count: Signal | None = None
    running: Signal | None = None
    state: Signal | None = None
    fault_code: Signal | None = None
    product: Signal | None = None
    order: Signal | None = None
    operator: Signal | None = None
    blocked: Signal | None = None
    starved: Signal | None = None
    process: dict[str, Signal] = field(default_factory=dict)

    def roles(self) -> dict[str, Signal]:
        """Every configured signal by role name; process values as `process.NAME`."""
        out: dict[str, Signal] = {}
        for name in self.__struct_fields__:
            if name == "process":
                continue
            sig = getattr(self, name)
            if sig is not None:
                out[name] = sig
        for pname, sig in self.process.items():
            out[f"process.{pname}"] = sig
        return out


# ---------------------------------------------------------------- production rules

LinesideStopState = Literal["running", "stop", "planned_stop", "blocked", "starved"]


class Product(_Base):
    ideal_cycle_time_s: Positive
    name: str = ""


class Reason(_Base):
    text: Annotated[str, Meta(min_length=1)]
    category: str = "unknown"
    planned: bool = False


class Production(_Base):
    ideal_cycle_time_s: Positive
    products: dict[str, Product] = field(default_factory=dict)
    stop_after_s: Positive | None = None
    micro_stop_max_s: Positive = 120.0
    max_parts_per_s: Positive | None = None
    startup_s: Positive | None = None
    parts_per_cycle: PositiveInt = 1
    reasons: dict[int, Reason] = field(default_factory=dict)
    state_map: Literal["packml", "machinery", "none"] = "none"
    states: dict[str, LinesideStopState] = field(default_factory=dict)

    def ideal_cycle_time(self, product: str | None) -> float:
        if product is not None and product in self.products:
            return self.products[product].ideal_cycle_time_s
        return self.ideal_cycle_time_s

    def effective_stop_after_s(self, product: str | None = None) -> float:
        """KPI_DEFINITIONS.md §3: default 2 x the ideal cycle time of the current product."""
        if self.stop_after_s is not None:
            return self.stop_after_s
        return 2.0 * self.ideal_cycle_time(product)

    def effective_max_parts_per_s(self, product: str | None = None) -> float:
        """KPI_DEFINITIONS.md §2: default 20 x the ideal rate."""
        if self.max_parts_per_s is not None:
            return self.max_parts_per_s
        return 20.0 * self.parts_per_cycle / self.ideal_cycle_time(product)


# ---------------------------------------------------------------- calendar


class Shift(_Base):
    name: Annotated[str, Meta(min_length=1)]
    start: ClockTime
    end: ClockTime
    days: list[Day] = field(default_factory=lambda: list(ALL_DAYS))


class Break(_Base):
    start: ClockTime
    end: ClockTime
    days: list[Day] | None = None
    shift: str | None = None
    name: str = ""


class Calendar(_Base):
    shifts: list[Shift] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)


class Kpi(_Base):
    intervals: list[Literal["hour", "shift", "order", "day"]] = field(
        default_factory=lambda: ["hour", "shift", "order", "day"]
    )
    provisional_every_s: Annotated[float, Meta(ge=1)] = 60.0


# ---------------------------------------------------------------- follow-up rules


class LongStopRule(_Base, tag_field="rule", tag="long_stop"):
    min_duration_s: Positive = 600.0
    categories: list[str] = field(default_factory=lambda: ["equipment_failure"])
    priority: Literal["low", "medium", "high"] = "high"
    clear_after_s: NonNegative = 28800.0  # follow-up: the request closes after this long without a new trigger


class RepeatedMicroStopsRule(_Base, tag_field="rule", tag="repeated_micro_stops"):
    count: PositiveInt = 20
    within_s: Positive = 3600.0
    priority: Literal["low", "medium", "high"] = "medium"
    clear_after_s: NonNegative = 3600.0


class MtbfDropRule(_Base, tag_field="rule", tag="mtbf_drop"):
    failures: PositiveInt = 5
    fraction: Fraction = 0.5
    baseline_days: Positive = 30.0
    priority: Literal["low", "medium", "high"] = "medium"
    clear_after_s: NonNegative = 86400.0


class CounterSuspectRule(_Base, tag_field="rule", tag="counter_suspect"):
    priority: Literal["low", "medium", "high"] = "low"
    clear_after_s: NonNegative = 28800.0


MaintenanceRule = LongStopRule | RepeatedMicroStopsRule | MtbfDropRule | CounterSuspectRule


class RejectRateRule(_Base, tag_field="rule", tag="reject_rate"):
    threshold: Fraction
    window_s: Positive = 900.0
    min_parts: PositiveInt = 100
    clear_after_s: NonNegative = 900.0


class StartupRejectsRule(_Base, tag_field="rule", tag="startup_rejects"):
    after_stop_s: Positive = 300.0
    max_rejects: PositiveInt = 5
    clear_after_s: NonNegative = 3600.0


class ProcessLimitsRule(_Base, tag_field="rule", tag="process_limits"):
    signal: str
    min: float | None = None
    max: float | None = None
    clear_after_s: NonNegative = 600.0


QualityRule = RejectRateRule | StartupRejectsRule | ProcessLimitsRule


class FollowUp(_Base):
    maintenance: list[MaintenanceRule] = field(default_factory=list)
    quality: list[QualityRule] = field(default_factory=list)


# ---------------------------------------------------------------- buffer and status


class BufferConfig(_Base):
    path: Annotated[str, Meta(min_length=1)]
    max_size_mb: Annotated[float, Meta(gt=0)] = 1024.0
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    retention_days: Annotated[float, Meta(ge=0)] = 7.0
    memory_bound_records: Annotated[int, Meta(ge=0)] = 100_000


class StatusConfig(_Base):
    listen: Annotated[str, Meta(pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")] = "127.0.0.1:8080"
    token_file: str | None = None


# ---------------------------------------------------------------- the whole file


class LineConfig(_Base):
    line: LineIdentity
    plcs: dict[str, Plc]
    signals: Signals
    production: Production
    buffer: BufferConfig
    timezone: str = "UTC"
    calendar: Calendar = field(default_factory=Calendar)
    kpi: Kpi = field(default_factory=Kpi)
    follow_up: FollowUp = field(default_factory=FollowUp)
    status: StatusConfig = field(default_factory=StatusConfig)


def line_config_schema() -> dict[str, object]:
    """JSON Schema of the line config, for editor autocomplete."""
    return msgspec.json.schema(LineConfig)
