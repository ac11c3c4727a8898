"""Transports over loop://, TCP, RFC 2217, a real pty pair and a faked USB device."""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
import tty
from collections.abc import Iterator
from typing import Any

import pytest
import serial
import serial.rfc2217

from drivers.transport import (
    DeviceNotFound,
    NotSupported,
    TransportError,
    TransportIOError,
    TransportTimeout,
    open_transport,
)


def read_exactly(transport: Any, size: int, timeout: float = 2.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        data += transport.read(size - len(data))
    return data


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(master)
    name = os.ttyname(slave)
    try:
        yield master, name
    finally:
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server
    server.close()


# ---------------------------------------------------------------------------------------- loop://


def test_loop_round_trip_and_close() -> None:
    transport = open_transport("loop://", timeout=0.05)
    assert transport.url == "loop://"
    assert transport.is_open
    transport.write(b"\xa0\x90\x01")
    assert read_exactly(transport, 3) == b"\xa0\x90\x01"
    transport.close()
    transport.close()  # harmless
    assert not transport.is_open
    with pytest.raises(TransportIOError):
        transport.read(10)
    with pytest.raises(TransportIOError):
        transport.write(b"x")


def test_read_returns_empty_on_timeout_and_does_not_wait_when_data_is_there() -> None:
    with open_transport("loop://", timeout=0.05) as quick:
        assert quick.read(10) == b""
    with open_transport("loop://", timeout=0.5) as transport:
        start = time.monotonic()
        transport.write(b"0123456789")
        assert transport.read(256) == b"0123456789"
        assert time.monotonic() - start < 0.4  # returned before the 0.5 s timeout
        assert transport.read(4) == b""


def test_traffic_is_logged_as_hex_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.transport")
    with open_transport("loop://", timeout=0.05) as transport:
        transport.write(b"\xff\x68")
        transport.read(2)
    messages = [r.getMessage() for r in caplog.records]
    assert "loop:// TX FF 68" in messages
    assert "loop:// RX FF 68" in messages


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        open_transport("loop://", timeout=-1)
    with pytest.raises(ValueError):
        open_transport("loop://", write_timeout=0)
    with pytest.raises(ValueError):
        open_transport("loop://", parity="X")


def test_unknown_scheme_is_not_supported() -> None:
    with pytest.raises(NotSupported):
        open_transport("carrier-pigeon://coop")


def test_missing_device_path() -> None:
    with pytest.raises(DeviceNotFound) as info:
        open_transport("/dev/ttyNO_SUCH_PORT")
    assert isinstance(info.value, TransportError)


# ------------------------------------------------------------------------------------------- TCP


@pytest.mark.parametrize("scheme", ["tcp", "socket"])
def test_tcp_round_trip_and_peer_close(tcp_server: socket.socket, scheme: str) -> None:
    port = tcp_server.getsockname()[1]
    transport = open_transport(f"{scheme}://127.0.0.1:{port}", timeout=0.05)
    peer, _ = tcp_server.accept()
    transport.write(b"\xa0\x90")
    assert peer.recv(10) == b"\xa0\x90"
    peer.sendall(b"\xff\x68")
    assert read_exactly(transport, 2) == b"\xff\x68"
    assert transport.read(10) == b""  # still open, just quiet
    peer.close()
    with pytest.raises(TransportIOError):
        for _ in range(20):  # must raise, not return b"" forever
            transport.read(10)
    transport.close()


def test_tcp_connection_refused_is_device_not_found() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(DeviceNotFound):
        open_transport(f"tcp://127.0.0.1:{port}")


def test_tcp_write_to_a_peer_that_never_reads_times_out(tcp_server: socket.socket) -> None:
    tcp_server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = tcp_server.getsockname()[1]
    with open_transport(f"tcp://127.0.0.1:{port}", write_timeout=0.2) as transport:
        peer, _ = tcp_server.accept()
        start = time.monotonic()
        with pytest.raises(TransportTimeout):
            transport.write(bytes(16 * 1024 * 1024))
        assert time.monotonic() - start < 2.0
        peer.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyserial's rfc2217 uses setDaemon()
def test_rfc2217_round_trip(tcp_server: socket.socket) -> None:
    """A minimal RFC 2217 server (pyserial's PortManager over loop://) echoes what it gets."""

    def serve() -> None:
        conn, _ = tcp_server.accept()
        port = serial.serial_for_url("loop://", timeout=0.05)

        class Link:
            def write(self, data: bytes) -> None:
                conn.sendall(data)

        manager = serial.rfc2217.PortManager(port, Link())
        done = threading.Event()

        def pump() -> None:
            while not done.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    conn.sendall(b"".join(manager.escape(data)))

        threading.Thread(target=pump, daemon=True).start()
        while data := conn.recv(1024):
            port.write(b"".join(manager.filter(data)))
        done.set()
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"rfc2217://127.0.0.1:{tcp_server.getsockname()[1]}"
    with open_transport(url, baudrate=19200, timeout=0.1) as transport:
        transport.write(b"\xff\x68\x03\x03\x68")  # FF is the Telnet IAC byte: must survive escaping
        assert read_exactly(transport, 5) == b"\xff\x68\x03\x03\x68"


# ------------------------------------------------------------------------------------------- pty


def test_pty_round_trip_and_hangup(pty_pair: tuple[int, str]) -> None:
    master, name = pty_pair
    transport = open_transport(name, baudrate=9600, timeout=0.05)
    os.write(master, b"\xff\x68\x03")
    assert read_exactly(transport, 3) == b"\xff\x68\x03"
    transport.write(b"\xa0\x90")
    assert select.select([master], [], [], 1.0)[0]
    assert os.read(master, 10) == b"\xa0\x90"
    os.close(master)
    with pytest.raises(TransportIOError):
        for _ in range(20):
            transport.read(10)
    transport.close()


# ------------------------------------------------------------------------------------------- USB


class FakeEndpoint:
    def __init__(self, address: int, packet: int = 8) -> None:
        self.bEndpointAddress = address
        self.bmAttributes = 0x02  # bulk
        self.wMaxPacketSize = packet
        self.incoming: list[bytes | Exception] = []
        self.written: list[bytes] = []
        self.write_error: Exception | None = None
        self.read_sizes: list[int] = []

    def read(self, size: int, timeout: int) -> bytes:
        self.read_sizes.append(size)
        item = self.incoming.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def write(self, data: bytes, timeout: int) -> int:
        if self.write_error is not None:
            raise self.write_error
        self.written.append(bytes(data))
        return len(data)


class FakeUsbDevice:
    def __init__(self) -> None:
        self.ep_in = FakeEndpoint(0x81)
        self.ep_out = FakeEndpoint(0x02)
        self.detached: list[int] = []

    def is_kernel_driver_active(self, interface: int) -> bool:
        return True

    def detach_kernel_driver(self, interface: int) -> None:
        self.detached.append(interface)

    def set_configuration(self) -> None:
        pass

    def get_active_configuration(self) -> dict[tuple[int, int], list[FakeEndpoint]]:
        return {(0, 0): [self.ep_out, self.ep_in]}


@pytest.fixture
def fake_usb(monkeypatch: pytest.MonkeyPatch) -> FakeUsbDevice:
    import usb.core
    import usb.util

    device = FakeUsbDevice()
    found: list[dict[str, int]] = []

    def find(**kwargs: int) -> FakeUsbDevice | None:
        found.append(kwargs)
        return device if kwargs == {"idVendor": 0x0483, "idProduct": 0x5743} else None

    monkeypatch.setattr(usb.core, "find", find)
    monkeypatch.setattr(usb.util, "dispose_resources", lambda dev: setattr(dev, "disposed", True))
    return device


def test_usb_bulk_round_trip(fake_usb: FakeUsbDevice) -> None:
    import usb.core

    transport = open_transport("usb://0483:5743", timeout=0.05)
    assert fake_usb.detached == [0]  # the usblp kernel driver was holding the printer
    transport.write(b"\x1b\x40")
    assert fake_usb.ep_out.written == [b"\x1b\x40"]
    fake_usb.ep_in.incoming = [b"0123456789", usb.core.USBTimeoutError("timeout")]
    assert transport.read(4) == b"0123"
    assert transport.read(100) == b"456789"  # surplus of the packet-sized read
    assert fake_usb.ep_in.read_sizes == [8]
    assert transport.read(4) == b""  # timeout
    fake_usb.ep_in.incoming = [usb.core.USBError("pipe error")]
    with pytest.raises(TransportIOError):
        transport.read(4)
    fake_usb.ep_out.write_error = usb.core.USBTimeoutError("timeout")
    with pytest.raises(TransportTimeout):
        transport.write(b"x")
    transport.close()
    assert getattr(fake_usb, "disposed", False)
    assert not transport.is_open


def test_usb_device_absent(fake_usb: FakeUsbDevice) -> None:
    with pytest.raises(DeviceNotFound):
        open_transport("usb://1234:5678")


def test_usb_bad_url(fake_usb: FakeUsbDevice) -> None:
    with pytest.raises(ValueError):
        open_transport("usb://printer")


def test_usb_without_pyusb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "usb", None)
    monkeypatch.setitem(sys.modules, "usb.core", None)
    monkeypatch.setitem(sys.modules, "usb.util", None)
    with pytest.raises(NotSupported):
        open_transport("usb://0483:5743")
