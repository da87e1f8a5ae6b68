"""``clearance serve`` as a real process, the way an operator runs it, for end-to-end tests."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, limit: float = 30) -> None:
    """Wait until ``check`` holds (polled every 0.1 s), or fail naming ``what``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def serving(env: dict[str, str], log_path: Path) -> AsyncIterator[str]:
    """Run ``clearance serve`` with ``env`` until the block ends; yields its base URL.

    On exit the process gets SIGTERM and must stop cleanly (exit 0) and promptly: within
    10 s, less than the dispatcher's idle interval with a long tick.
    """
    base = f"http://127.0.0.1:{env['PORT']}"
    with log_path.open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "serve", env=env, stdout=log, stderr=log
        )
        try:

            async def healthy() -> bool:
                try:
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(f"{base}/healthz") as response,
                    ):
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await until(healthy, "clearance serve to answer /healthz", 60)
            yield base
        finally:
            server.terminate()
            stopping = time.monotonic()
            code = await asyncio.wait_for(server.wait(), 30)
            if code != 0:
                raise AssertionError(await asyncio.to_thread(log_path.read_text))
            assert time.monotonic() - stopping < 10, "clearance serve was slow to stop"
