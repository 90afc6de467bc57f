"""OpenTelemetry records in dyntel: what Common Schema events (from user_events or ETW) decode to."""

from dyntel.otel.common_schema import is_common_schema, to_otel
from dyntel.otel.records import OtelLog, OtelSpan

__all__ = ["OtelLog", "OtelSpan", "is_common_schema", "to_otel"]
