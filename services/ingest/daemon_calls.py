"""A blocking call awaited from the event loop without holding up a stop: run in a daemon thread, not the default
executor (``asyncio.run`` joins that at exit, so a stop would wait for a REST page's minute of retries or a
connection's 40 s of authentication)::

    page = await in_daemon_thread(lambda: rest.get("/v3/trades/AAPL"), name="orderflow-rest")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


def in_daemon_thread(function: Callable[[], Any], *, name: str) -> asyncio.Future[Any]:
    """``function()`` in a daemon thread called ``name``, as a future of this loop (its result or its exception);
    nobody waits for the thread once the loop has closed."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():
            (future.set_exception if failed else future.set_result)(outcome)

    def work() -> None:
        try:
            outcome, failed = function(), False
        except BaseException as error:
            outcome, failed = error, True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it any more
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future
