"""Enumerations shared by the queues, meters and AQMs: what a queue did with a packet
(:class:`Verdict`) and a meter's colour (:class:`Color`).

Both are :class:`enum.IntEnum`, so they compare equal to the integer codes that the numpy batch
forms return (``Verdict.DROPPED == 1``).
"""

from __future__ import annotations

import enum

__all__ = ["Color", "Verdict"]


class Verdict(enum.IntEnum):
    """What a queue did with an arriving packet."""

    ENQUEUED = 0
    """Queued unchanged."""
    DROPPED = 1
    """Refused: an early (random) drop, a forced drop, or overflow of the queue's limit."""
    MARKED = 2
    """Queued with ECN Congestion Experienced set instead of dropped (RFC 3168)."""


class Color(enum.IntEnum):
    """A meter's colour (RFC 2697, RFC 2698, RFC 4115)."""

    GREEN = 0
    YELLOW = 1
    RED = 2
