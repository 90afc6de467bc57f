"""Events to bytes: writers of the formats dyntel decodes, from their documented layouts.

They exist so that every type a decoder claims to read can be produced on any machine and read back (round-trip
tests), without a Windows host or a live producer.
"""
