"""One EventHeader event as a live source gets it: the tracepoint name, then the bytes of the tracepoint's payload
(eventheader, extension blocks, fields). Input: `name NUL event bytes`.

Documented outcomes: an Event whose fields can be read, shown as JSON and forwarded as OTLP (the request bytes
parsed back by the protobuf runtime), NotEventHeader (then decoded as plain tracefs fields), or DecodeError with an
offset inside the event. Both byte orders are tried: a big-endian event
is the same bytes with the flags' little-endian bit cleared.

    python -m fuzz.eventheader [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.eventheader --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import Finding, entry

MODULES = ["dyntel.decoders.eventheader", "dyntel.event_json", "dyntel.otel.otlp_events"]


def decode_one(name: str, event: bytes) -> str | None:
    """The event as JSON, or None when refused as documented."""
    from dyntel.decoders.eventheader import EventHeaderDecoder, TypeCache
    from dyntel.errors import DecodeError
    from dyntel.event_json import format_event

    decoder = EventHeaderDecoder(TypeCache(max_types=64))
    try:
        decoded = decoder.decode(name, event)
    except DecodeError as e:
        if e.offset is None or not 0 <= e.offset <= len(event):
            raise Finding(f"DecodeError at offset {e.offset}, outside the {len(event)}-byte event: {e}") from e
        return None
    decoded.fields  # noqa: B018 - building the mapping must not fail
    _forward(decoded)
    return format_event(decoded, field_tags=True)


_ENCODER: list[object] = []


def _forward(event: object) -> None:
    """As the forwarder sends the event: OTLP request bytes, which the protobuf runtime must parse."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from dyntel.otel.otlp_events import LOGS, EventEncoder

    if not _ENCODER:
        _ENCODER.append(EventEncoder(resource={"service.name": "fuzz"}))
    encoder = _ENCODER[0]
    assert isinstance(encoder, EventEncoder)
    for signal, body in encoder.requests([event]).items():  # type: ignore[list-item]
        kind = ExportLogsServiceRequest if signal == LOGS else ExportTraceServiceRequest
        try:
            kind.FromString(body)
        except Exception as e:
            raise Finding(f"the OTLP {signal} request for this event does not parse: {e}") from e


def run(data: bytes) -> None:
    nul = data.find(b"\0")
    if nul < 0:
        return
    name = data[:nul].decode("utf-8", "surrogateescape")
    event = data[nul + 1 :]
    decode_one(name, event)
    if event:
        decode_one(name, bytes([event[0] ^ 0x02]) + event[1:])  # the other byte order


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
