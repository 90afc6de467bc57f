"""Bytes to events: tracefs formats, EventHeader, and (later) TraceLogging.

A decoder turns the payload bytes of one event type into `Event.values` following a `Schema`. Decoders are compiled
once per event type (a tracefs format, an EventHeader metadata blob) and cached by whoever owns the type's id, so
the per-event work is a precompiled unpack.
"""
