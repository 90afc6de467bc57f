"""Why a capture failed, worded so the person running dyntel knows what to change."""

from __future__ import annotations

from dyntel.errors import DyntelError


class CaptureError(DyntelError):
    """A capture that could not be made; the message says what to do about it."""


class ProcessGone(CaptureError):
    """The pid (or one of its threads) exited, or is not visible from here."""


class NotPermitted(CaptureError):
    """ptrace or a memory read was refused; the message (from permissions.explain) names the reason."""
