"""A loopback TCP proxy that injects network faults between the services and Kafka or PostgreSQL.

Modes (switchable at any time):
- ``pass``: forward bytes both ways.
- ``latency``: forward, but hold every chunk for ``delay`` seconds first.
- ``blackhole``: accept and read, forward nothing (peers see a silent network, not a closed one).
- ``reset``: abort every open connection with a TCP reset and reset new ones at once.
"""

from __future__ import annotations

import asyncio
import socket
import struct


class FaultProxy:
    def __init__(self, listen_port: int, target_port: int, host: str = "127.0.0.1") -> None:
        self.listen_port, self.target_port, self.host = listen_port, target_port, host
        self.mode = "pass"
        self.delay = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> "FaultProxy":
        self._server = await asyncio.start_server(self._accept, self.host, self.listen_port, reuse_address=True)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._abort_all()
            await self._server.wait_closed()

    def set(self, mode: str, delay: float = 0.0) -> None:
        assert mode in ("pass", "latency", "blackhole", "reset")
        self.mode, self.delay = mode, delay
        if mode == "reset":
            self._abort_all()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _reset(client_w)
            return
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            _reset(client_w)
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w),
                             return_exceptions=True)
        for w in (client_w, server_w):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while self.mode == "blackhole":
                    await asyncio.sleep(0.05)  # swallow: nothing goes through until the mode changes
                if self.mode == "reset":
                    return
                if self.mode == "latency" and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        finally:
            if not writer.is_closing():
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN, as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
