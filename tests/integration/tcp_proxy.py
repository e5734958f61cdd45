"""A loopback TCP proxy that can be cut: every proxied connection reset and new ones refused, as
when a database server restarts; then restored on the same port (for the store-outage tests). It can
also stall: connections stay open but every byte is dropped, as on a network path that loses packets
without a reset (a firewall's dropped state, a half-dead peer)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` until :meth:`cut`.

    Use ``async with TcpProxy(host, port) as proxy:``; ``proxy.port`` is the listening port (fixed
    across a cut and a :meth:`restore`). ``connections`` counts the connections accepted so far.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stalled = False

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()

    @property
    def up(self) -> bool:
        """Whether new connections are accepted."""
        return self._server is not None

    async def restore(self) -> None:
        """Listen again (on the port of the first start)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening (connections are refused) and reset every proxied connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # RST, as a crashed server's host would answer
        self._transports.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    def stall(self) -> None:
        """Drop every byte both ways from now on; connections stay open (and new ones are accepted)."""
        self.stalled = True

    async def unstall(self) -> None:
        """Forward again. The connections that were open stay open with bytes missing from their
        streams: a client that waits on one without a timeout waits forever."""
        self.stalled = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._transports |= {writer.transport, up_writer.transport}  # type: ignore[arg-type]
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._transports.discard(w.transport)  # type: ignore[arg-type]
                w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if self.stalled:
                    continue
                dst.write(data)
                await dst.drain()
