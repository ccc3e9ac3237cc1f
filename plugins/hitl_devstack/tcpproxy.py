"""A TCP proxy on loopback that a test takes down and brings back: a database outage without stopping the database.

The machine's PostgreSQL is shared (other sessions use it), so an outage test never stops it. Clients are
pointed at this proxy instead; ``down()`` closes its listening socket and every connection it carries
(clients see refused connections and resets, as when the server goes away), ``up()`` listens again on the
same port. Each connection is two pump threads; everything stops with ``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpProxy:
    def __init__(self, *, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.port = port
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def up(self) -> TcpProxy:
        """Listen (again, on the same port); returns self."""
        with self._lock:
            if self._listener is not None:
                return self
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._listener = listener
        t = threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"proxy-accept-{self.port}")
        t.start()
        self._threads.append(t)
        return self

    def down(self) -> None:
        """Stop listening and cut every connection now open."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.down()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # down(): the listener was closed
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._conns.update((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other pump, which closes its end
            src.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


@contextlib.contextmanager
def proxied(host: str, port: int) -> Iterator[TcpProxy]:
    """A proxy to ``host:port``, up, closed on the way out."""
    proxy = TcpProxy(target=(host, port)).up()
    try:
        yield proxy
    finally:
        proxy.close()
