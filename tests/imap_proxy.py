"""A TCP proxy in front of Dovecot, for faults a real server will not make on request.

    proxy = await ImapProxy.start(server.port)     plain IMAP only (it reads commands)
    proxy.port                                     where the source connects
    proxy.drop_idlers()        close every connection that ever sent IDLE (the watcher)
    proxy.drop_all()           close every connection
    proxy.busy_next("BODY.PEEK", 1.5)   answer the next command containing the text with
                               `<tag> NO [UNAVAILABLE] ... retry in 1.5 seconds` (RFC 5530)

Everything else passes through unchanged, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    idler: bool = False


@dataclass
class ImapProxy:
    target_port: int
    server: asyncio.Server | None = None
    links: set[_Link] = field(default_factory=set)
    busy: list[tuple[str, float]] = field(default_factory=list)
    #: Capabilities removed from what the server announces (b"MOVE", b"IDLE", ...).
    hidden: tuple[bytes, ...] = ()
    #: IDLE commands seen so far (all connections).
    idles: int = 0

    @classmethod
    async def start(cls, target_port: int, hidden: tuple[bytes, ...] = ()) -> ImapProxy:
        proxy = cls(target_port, hidden=hidden)
        proxy.server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def drop_idlers(self) -> int:
        dropped = [link for link in self.links if link.idler]
        for link in dropped:
            self._drop(link)
        return len(dropped)

    def drop_all(self) -> None:
        for link in list(self.links):
            self._drop(link)

    def busy_next(self, text: str, seconds: float) -> None:
        self.busy.append((text.upper(), seconds))

    def _drop(self, link: _Link) -> None:
        self.links.discard(link)
        for writer in (link.client, link.server):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self.links.add(link)
        down = asyncio.create_task(self._pipe(up_reader, writer, self.hidden))
        try:
            while line := await reader.readline():
                if not self._intercepted(link, line):
                    up_writer.write(line)
                    await up_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(link)
            down.cancel()

    def _intercepted(self, link: _Link, line: bytes) -> bool:
        words = line.split(None, 2)
        if len(words) >= 2 and words[1].upper().strip() == b"IDLE":
            link.idler = True
            self.idles += 1
        upper = line.decode("latin-1").upper()
        for i, (text, seconds) in enumerate(self.busy):
            if text in upper and len(words) >= 2:
                del self.busy[i]
                tag = words[0].decode("latin-1")
                reply = f"{tag} NO [UNAVAILABLE] Server busy, retry in {seconds} seconds\r\n"
                link.client.write(reply.encode())
                return True
        return False

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hidden: tuple[bytes, ...]
    ) -> None:
        try:
            while data := await (reader.readline() if hidden else reader.read(65536)):
                if b"CAPABILITY" in data:
                    for name in hidden:
                        data = data.replace(b" " + name + b" ", b" ").replace(
                            b" " + name + b"]", b"]"
                        )
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
