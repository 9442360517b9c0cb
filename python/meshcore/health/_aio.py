"""Small asyncio helpers shared by the health module."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["wait_cancelled"]


async def wait_cancelled(task: asyncio.Task[Any]) -> None:
    """Await ``task`` after ``task.cancel()``. Its own ``CancelledError`` is expected and
    dropped; one aimed at the caller (``current_task().cancelling()`` is non-zero: someone
    cancelled the task that is closing, or its ``asyncio.timeout`` expired) is raised again, so
    closing never swallows the caller's cancellation."""
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
