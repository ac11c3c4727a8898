"""Byte links between an emulated device and the host (the hall daemon or a test).

A link carries raw bytes both ways, exactly as a serial cable or a serial-to-TCP bridge would, so
the daemon's drivers cannot tell an emulator from the real device. Three kinds:

* ``TcpLink`` listens on 127.0.0.1 (port 0 = ephemeral); url ``socket://127.0.0.1:PORT``. One host
  connection at a time; a newer connection replaces the older one, as serial servers do.
* ``PtyLink`` is a pseudo-terminal; url is a stable symlink to the slave (like udev's
  ``/dev/serial/by-id/...``) so the url survives a simulated unplug.
* ``MemoryLink`` is in-process; the host side is ``MemoryLink.host_port()``, a small serial-like
  object (``read``/``write``/``close``) for tests and drivers that accept a ready transport.

Fault injection uses ``drop()``/``restore()`` (see ``hw_emulators.device``):

* TCP: the current connection is reset, and new connections are accepted and reset at once until
  ``restore()``; the listening port never changes.
* pty: the symlink is removed and the pty closed, so the host's reads and writes fail and reopening
  the url fails with "no such file" — what unplugging a USB-serial adapter does. ``restore()``
  opens a new pty and points the same symlink at it, so the host reopens the same url.
* memory: the host port raises ``ConnectionError`` until it is reopened after ``restore()``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

BytesHandler = Callable[[bytes], None]


class Link(ABC):
    """One byte pipe to the host; subclasses differ only in how the host reaches it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handler: BytesHandler | None = None
        self._dropped = False
        # At most this many bytes of each chunk in the DEBUG traffic log (None: all): a card reader's
        # answers carry a citizen's name and ID number (set from the device's traffic_log_bytes).
        self.log_limit: int | None = None

    def traffic(self, data: bytes) -> str:
        """`data` as hex for the DEBUG log, cut at `log_limit`."""
        if self.log_limit is None or len(data) <= self.log_limit:
            return data.hex(" ")
        return f"{data[:self.log_limit].hex(' ')} … ({len(data)} bytes, the rest not logged)"

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the host connects (what ``GET /devices`` reports)."""

    @property
    def dropped(self) -> bool:
        return self._dropped

    @property
    def host_connected(self) -> bool | None:
        """Whether a host is attached right now; None when the link cannot tell (pty)."""
        return None

    def start(self, handler: BytesHandler) -> None:
        self._handler = handler
        self._open()

    def stop(self) -> None:
        self._close()

    def drop(self) -> None:
        """Simulate an unplugged cable until ``restore()``."""
        if not self._dropped:
            self._dropped = True
            logger.info("%s: link dropped", self.name)
            self._on_drop()

    def restore(self) -> None:
        if self._dropped:
            self._dropped = False
            logger.info("%s: link restored", self.name)
            self._on_restore()

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Bytes from the device to the host; silently lost when no host is attached."""

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _on_drop(self) -> None: ...

    @abstractmethod
    def _on_restore(self) -> None: ...

    def _deliver(self, data: bytes) -> None:
        logger.debug("%s: host -> device %s", self.name, self.traffic(data))
        if self._handler is not None:
            try:
                self._handler(data)
            except Exception:  # a device bug must not kill the link's reader thread
                logger.exception("%s: device failed to handle %s", self.name, self.traffic(data))


def _abort(sock: socket.socket) -> None:
    """Close with RST so the host sees the connection die at once, not a polite EOF later."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class TcpLink(Link):
    """A serial-to-TCP bridge: the host connects to ``socket://HOST:PORT``."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(name)
        self._bind = (host, port)
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._address: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        if self._address is None:
            raise RuntimeError(f"{self.name}: link not started")
        return f"socket://{self._address[0]}:{self._address[1]}"

    @property
    def host_connected(self) -> bool:
        return self._conn is not None

    def _open(self) -> None:
        self._server = socket.create_server(self._bind)
        self._address = self._server.getsockname()[:2]
        self._spawn(self._accept_loop, self._server, "accept")

    def _spawn(self, target: Callable[..., None], arg: socket.socket, what: str) -> None:
        thread = threading.Thread(target=target, args=(arg,), name=f"emu-{self.name}-{what}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self, server: socket.socket) -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return  # listening socket closed by stop()
            if self._dropped:
                logger.info("%s: refusing %s:%s (disconnect fault)", self.name, *peer[:2])
                _abort(conn)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                old, self._conn = self._conn, conn
            if old is not None:
                logger.info("%s: new host connection replaces the old one", self.name)
                _abort(old)
            logger.info("%s: host connected from %s:%s", self.name, *peer[:2])
            self._spawn(self._read_loop, conn, "read")

    def _read_loop(self, conn: socket.socket) -> None:
        try:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                self._deliver(data)
        finally:
            with self._lock:
                mine = self._conn is conn
                if mine:
                    self._conn = None
            if mine:
                logger.info("%s: host disconnected", self.name)
                conn.close()

    def send(self, data: bytes) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                logger.debug("%s: no host, lost %s", self.name, self.traffic(data))
                return
            logger.debug("%s: device -> host %s", self.name, self.traffic(data))
            try:
                conn.sendall(data)
            except OSError as exc:
                logger.info("%s: send failed: %s", self.name, exc)

    def _reset_connection(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _abort(conn)

    def _on_drop(self) -> None:
        self._reset_connection()

    def _on_restore(self) -> None:
        """Nothing to do: the accept loop simply stops resetting new connections."""

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            server.close()
        self._reset_connection()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []


class PtyLink(Link):
    """A pseudo-terminal whose slave the host opens like a serial port, via a stable symlink.

    The symlink lives in ``directory`` or, by default, in a private temporary directory that
    ``stop()`` removes.
    """

    def __init__(self, name: str, directory: Path | None = None) -> None:
        super().__init__(name)
        self._directory = directory
        self._own_dir: Path | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._wake: tuple[int, int] | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()

    @property
    def _path(self) -> Path:
        directory = self._directory or self._own_dir
        if directory is None:
            raise RuntimeError(f"{self.name}: link not started")
        return directory / self.name

    @property
    def url(self) -> str:
        return str(self._path)

    def _open(self) -> None:
        if self._directory is None and self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="hall-emu-"))
        self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        # Keeping our own slave fd open keeps the pty alive while the host has it closed.
        self._master, self._slave = master, slave
        self._wake = os.pipe()
        tmp = self._path.with_name(f".{self.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self._path)
        logger.info("%s: pty %s -> %s", self.name, self._path, os.ttyname(slave))
        self._reader = threading.Thread(target=self._read_loop, args=(master, self._wake[0]),
                                        name=f"emu-{self.name}-pty", daemon=True)
        self._reader.start()

    def _read_loop(self, master: int, wake: int) -> None:
        while True:
            ready, _, _ = select.select([master, wake], [], [])
            if wake in ready:
                return
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                logger.info("%s: pty read failed: %s", self.name, exc)
                return
            if data:
                self._deliver(data)

    def send(self, data: bytes) -> None:
        with self._write_lock:
            master = self._master
            if master is None:
                logger.debug("%s: pty closed, lost %s", self.name, self.traffic(data))
                return
            logger.debug("%s: device -> host %s", self.name, self.traffic(data))
            view = memoryview(data)
            deadline = time.monotonic() + 1.0
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    # The host is not reading and the tty buffer is full: a UART would overrun too.
                    if time.monotonic() > deadline:
                        logger.warning("%s: host not reading, lost %d bytes", self.name, len(view))
                        return
                    time.sleep(0.01)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        logger.info("%s: pty write failed: %s", self.name, exc)
                    return

    def _on_drop(self) -> None:
        self._close_pty()

    def _on_restore(self) -> None:
        self._open_pty()

    def _close_pty(self) -> None:
        if self._master is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        with self._write_lock:
            fds = [fd for fd in (self._master, self._slave) if fd is not None]
            fds += list(self._wake or ())
            self._master = self._slave = self._wake = None
        for fd in fds:
            os.close(fd)

    def _close(self) -> None:
        self._close_pty()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None


class MemoryPort:
    """The host end of a ``MemoryLink``: the subset of pyserial's API the drivers use."""

    def __init__(self, link: MemoryLink, timeout: float | None) -> None:
        self._link = link
        self.timeout = timeout
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self.is_open = True

    def _check(self) -> None:
        if not self.is_open:
            raise ConnectionError(f"{self._link.name}: port closed")
        if self._link.dropped or self._link.port is not self:
            raise ConnectionError(f"{self._link.name}: device disconnected")

    def _feed(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def in_waiting(self) -> int:
        return len(self._buffer)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; fewer (maybe none) when ``timeout`` runs out."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._cond:
            while len(self._buffer) < size:
                self._check()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            self._check()
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    def write(self, data: bytes) -> int:
        self._check()
        self._link._deliver(bytes(data))
        return len(data)

    def close(self) -> None:
        self.is_open = False
        self._wake()


class MemoryLink(Link):
    """In-process link: no file descriptors, no ports; the host holds a ``MemoryPort``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.port: MemoryPort | None = None

    @property
    def url(self) -> str:
        return f"memory://{self.name}"

    @property
    def host_connected(self) -> bool:
        return self.port is not None and self.port.is_open

    def host_port(self, timeout: float | None = 1.0) -> MemoryPort:
        """Attach the host (replacing any earlier port); refused while the link is dropped."""
        if self._dropped:
            raise ConnectionError(f"{self.name}: device disconnected")
        old, self.port = self.port, MemoryPort(self, timeout)
        if old is not None:
            old._wake()
        return self.port

    def send(self, data: bytes) -> None:
        port = self.port
        if port is None or not port.is_open or self._dropped:
            logger.debug("%s: no host, lost %s", self.name, self.traffic(data))
            return
        logger.debug("%s: device -> host %s", self.name, self.traffic(data))
        port._feed(data)

    def _open(self) -> None:
        """Nothing to open: the host attaches with ``host_port()``."""

    def _close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def _on_drop(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port._wake()  # a blocked read raises ConnectionError

    def _on_restore(self) -> None:
        """The host reattaches with ``host_port()``, like reopening a serial port."""
