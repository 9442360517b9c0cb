"""Small asyncio helpers shared by the discovery and health modules."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["stop_task"]


async def stop_task(task: asyncio.Task[Any], owner: object, log: logging.Logger) -> None:
    """Cancel ``task`` and wait until it has ended. An exception the task died with is logged on
    ``log`` (on behalf of ``owner``), not raised. The task's own cancellation is absorbed, but
    when the caller itself is being cancelled (``asyncio.timeout``, ``Task.cancel()``) while it
    waits, that cancellation is raised: swallowing it would break the caller's timeout."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        log.exception("%r: the background task had died", owner)
