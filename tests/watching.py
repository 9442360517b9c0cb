"""Helpers for the discovery tests: run a coroutine with a bound, wait for a condition, and read a
``watch()`` iterator with timeouts without cancelling it (cancelling ``anext()`` would close the
async generator, so a background task drains it into a queue instead)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from meshcore.discovery import EndpointSet

__all__ = ["Watcher", "eventually", "run"]

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


class Watcher:
    """``async for`` over ``it`` in a task; ``await w.next()`` gets the next set, raising
    TimeoutError when nothing comes in time; ``await w.ended()`` checks that the iteration ended."""

    def __init__(self, it: AsyncIterator[EndpointSet]) -> None:
        self.queue: asyncio.Queue[EndpointSet | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain(it))

    async def _drain(self, it: AsyncIterator[EndpointSet]) -> None:
        async for endpoints in it:
            await self.queue.put(endpoints)
        await self.queue.put(None)

    async def next(self, timeout: float = 10.0) -> EndpointSet:
        got = await asyncio.wait_for(self.queue.get(), timeout)
        assert got is not None, "the watch ended"
        return got

    async def ended(self, timeout: float = 10.0) -> bool:
        """True when the iterator ended (nothing more was yielded before it did)."""
        return await asyncio.wait_for(self.queue.get(), timeout) is None
