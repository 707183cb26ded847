"""A TCP proxy a test can cut: between the services and the database, so an outage is a
real one (connections reset, new ones refused) and the processes are left alone.

Written here in asyncio rather than Toxiproxy: ~60 lines, no Go build or control API to
run, and "cut", "restore" and a slow link (one-way delay, a rate in bytes per second, as a
phone on slow 3G has) are the only faults the tests need. (The broker is cut by
killing and restarting its process instead: Kafka clients reconnect to the advertised
listener, which a plain proxy would not be.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from doorstep_cli.localstack import free_port


class TcpProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, delay: float = 0.0, rate: float = 0.0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay  # seconds each way
        self.rate = rate  # bytes per second each way; 0 is unlimited
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self._run(self._cut())

    def restore(self) -> None:
        self._run(self._listen())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.delay or self.rate:
            await self._slow_pipe(reader, writer)
            return
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _slow_pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each chunk leaves when the link has carried it (the rate) and arrives ``delay``
        later; chunks in flight overlap, as on a real link, so a large reply costs one
        delay, not one per chunk."""
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        link_free = loop.time()

        async def deliver() -> None:
            while (item := await in_flight.get())[1]:
                await asyncio.sleep(max(0.0, item[0] - loop.time()))
                writer.write(item[1])
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while data := await reader.read(4096):
                link_free = max(link_free, loop.time()) + (
                    len(data) / self.rate if self.rate else 0
                )
                await asyncio.sleep(max(0.0, link_free - loop.time()))  # the link is busy
                in_flight.put_nowait((link_free + self.delay, data))
            in_flight.put_nowait((link_free + self.delay, b""))
            await delivering
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the proxy's loop already closed
                delivering.cancel()
            self._writers.discard(writer)
            writer.transport.abort()
