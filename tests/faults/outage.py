"""Database outages a test can cause and end: SQLite held by another connection, Postgres cut off.

Postgres is reached through :class:`TcpProxy`, a small forwarder on a local port: cutting it
drops the connections the lab holds and refuses new ones at once, as a database server
that went away would; restoring it lets new connections through again.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from lab import db

SHORT_BUSY_TIMEOUT_MS = 300
"""A busy timeout the tests can wait out (the lab's own is 30 s)."""


@contextmanager
def sqlite_locked(engine: Engine) -> Iterator[None]:
    """Hold SQLite's write lock from another connection until the block ends (readers go on, as in WAL)."""
    conn = sqlite3.connect(str(engine.url.database), isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def sqlite_locked_for(engine: Engine, seconds: float) -> Iterator[None]:
    """Hold SQLite's write lock from another thread for ``seconds`` (or until the block ends, if sooner).

    The block starts once the lock is held; the lock is given back when the block ends,
    so what the block ran while the database was busy then goes on by itself.
    """
    released, held = threading.Event(), threading.Event()

    def hold() -> None:
        with sqlite_locked(engine):
            held.set()
            released.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        yield
    finally:
        released.set()
        holder.join()


def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make SQLite engines created from now on give up on a lock after :data:`SHORT_BUSY_TIMEOUT_MS`."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)


class TcpProxy:
    """Forward connections from a free local port to ``host:port`` until cut."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._accepting.start()

    def url(self, database_url: str) -> str:
        """``database_url`` (aimed at the proxied server) aimed at the proxy instead."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self) -> None:
        """Drop every forwarded connection and refuse new ones."""
        self._up.clear()
        with self._lock:
            dropped, self._open = self._open, []
        for sock in dropped:
            _drop(sock)

    def restore(self) -> None:
        """Let new connections through again."""
        self._up.set()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The server is out of reach inside the block."""
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def close(self) -> None:
        """Stop listening and drop everything."""
        self._closed.set()
        self._accepting.join()
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            if not self._up.is_set():
                _drop(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _drop(client)
                continue
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _drop(src)
        _drop(dst)


def _drop(sock: socket.socket) -> None:
    """Close a socket, waking any thread blocked reading it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def postgres_proxy(database_url: str) -> Iterator[TcpProxy]:
    """A :class:`TcpProxy` in front of the Postgres server of ``database_url``."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy
    finally:
        proxy.close()
