"""Writing EventHeader events to Linux user_events from Python, and OpenTelemetry processors that use it.

`Provider`, `Event` and the field types are here; the OpenTelemetry SDK processors are in dyntel.producer.otel
(imported on demand: the SDK is needed only there). See docs/producer.md.
"""

from dyntel.producer.fields import (
    BINARY,
    BOOL8,
    BOOL32,
    CSTR8,
    CSTR16,
    CSTR32,
    ERRNO,
    F32,
    F64,
    GUID,
    HEX32,
    HEX64,
    I8,
    I16,
    I32,
    I64,
    PID,
    PORT,
    STR8,
    STR16,
    STR32,
    TIME64,
    U8,
    U16,
    U32,
    U64,
    Field,
    FieldType,
    array,
    struct_of,
)
from dyntel.producer.provider import Event, EventSet, EventTooLarge, Provider, tracepoint_name
from dyntel.producer.sink import CaptureSink, NoopSink, UserEventsSink, capture_pair
from dyntel.sources.perf.user_events import UserEventsUnavailable

__all__ = [
    "BINARY", "BOOL8", "BOOL32", "CSTR8", "CSTR16", "CSTR32", "ERRNO", "F32", "F64", "GUID", "HEX32", "HEX64", "I8",
    "I16", "I32", "I64", "PID", "PORT", "STR8", "STR16", "STR32", "TIME64", "U8", "U16", "U32", "U64",
    "CaptureSink", "Event", "EventSet", "EventTooLarge", "Field", "FieldType", "NoopSink", "Provider",
    "UserEventsSink", "UserEventsUnavailable", "array", "capture_pair", "struct_of", "tracepoint_name",
]
