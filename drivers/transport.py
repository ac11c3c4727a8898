"""Byte transports selected by URL, so a driver never cares how its device is reached.

Supported URLs:

- a device path (``/dev/ttyUSB0``, ``/dev/ttyS1``, a pty slave such as ``/dev/pts/7``)
- ``socket://host:port`` and its alias ``tcp://host:port`` (raw TCP, e.g. a serial-over-TCP bridge)
- ``rfc2217://host:port`` (Telnet COM-port control, e.g. a networked serial server)
- ``loop://`` (in-process loopback: every byte written is read back; for tests)
- ``usb://VID:PID[?interface=N]`` (hex ids, bulk endpoints through pyusb, e.g. a USB printer)
- ``emulated://HOST:PORT/DEVICE`` (device ``DEVICE`` of the device emulator whose control API listens at
  HOST:PORT, ``hall-emu run --control``): a transport like the others, in the way python-can's virtual
  interface is just another interface. Opening it asks the emulator where it serves the device
  (:class:`EmulatorDirectory`, ``GET /devices``) and opens that; a device left at ``url: emulated`` in
  the hall config gets this URL from :func:`device_url`. Nothing answering at HOST:PORT, or an
  emulator that does not serve the device, is :class:`DeviceNotFound`: retried like an unplugged cable.

Everything except USB and the emulator goes through pyserial's ``serial_for_url``. Library exceptions are translated
into the small :class:`TransportError` hierarchy so the device manager can decide between "retry
later" (:class:`DeviceNotFound`, :class:`TransportIOError`, :class:`TransportTimeout`) and "will never
work" (:class:`NotSupported`). Every read and write is bounded by a timeout: a read that times out
returns ``b""``; a write that times out raises :class:`TransportTimeout`. Traffic is logged as hex at
DEBUG level on this module's logger.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

log = logging.getLogger(__name__)

__all__ = [
    "EMULATED",
    "DeviceNotFound",
    "EmulatorDirectory",
    "NotSupported",
    "SerialTransport",
    "Transport",
    "TransportError",
    "TransportIOError",
    "TransportTimeout",
    "UsbTransport",
    "device_url",
    "emulated_url",
    "open_transport",
]

#: The ``url`` of a device in the hall config that the device emulator serves (the one definition).
EMULATED = "emulated"
EMULATOR_TIMEOUT_S = 1.0


class TransportError(Exception):
    """Base class of every transport failure."""


class DeviceNotFound(TransportError):
    """The device is absent or unreachable (no such path, connection refused, USB id not present)."""


class TransportIOError(TransportError):
    """An open transport failed (peer closed, cable pulled, I/O error); reopen to recover."""


class TransportTimeout(TransportError):
    """A write did not complete within its write timeout (flow control stall, peer not reading)."""


class NotSupported(TransportError):
    """The URL scheme or a required library/back end is not available on this machine."""


# errno values that mean "the device is not there (yet)" rather than "it is broken".
_ABSENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENODEV,
        errno.ENXIO,
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
    }
)


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


class Transport(ABC):
    """A bidirectional byte pipe with bounded reads and writes. Not restartable: reopen instead."""

    def __init__(self, url: str) -> None:
        self.url = url
        # At most this many bytes of each chunk go to the DEBUG traffic log (None: all). A card
        # reader's replies carry a citizen's name and ID number, which no log may hold.
        self.log_limit: int | None = None

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """True until :meth:`close` or a failure that closed the underlying handle."""

    @abstractmethod
    def read(self, max_bytes: int = 256) -> bytes:
        """Return up to ``max_bytes`` bytes as soon as some arrive, or ``b""`` when the read timeout expires."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data`` or raise; never blocks longer than the write timeout."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; calling it twice is harmless."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<{type(self).__name__} {self.url} {state}>"

    def _traffic(self, data: bytes) -> str:
        limit = self.log_limit
        if limit is None or len(data) <= limit:
            return _hex(data)
        return f"{_hex(data[:limit])} … ({len(data)} bytes, the rest not logged)"

    def _log_rx(self, data: bytes) -> None:
        if data and log.isEnabledFor(logging.DEBUG):
            log.debug("%s RX %s", self.url, self._traffic(data))

    def _log_tx(self, data: bytes) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s TX %s", self.url, self._traffic(data))


def _buffered(port: serial.SerialBase) -> int:
    """Bytes readable without waiting. pyserial's socket:// ports only tell whether there are some
    (in_waiting is 0 or 1), which would take a bulk transfer (a camera image) a byte at a time: ask
    their socket how much it holds."""
    sock = getattr(port, "_socket", None) if isinstance(port, _SocketSerial) else None
    if isinstance(sock, socket.socket):
        try:
            return len(sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return 0
    return port.in_waiting


class SerialTransport(Transport):
    """A pyserial port (device path, pty, socket, RFC 2217 or loop)."""

    def __init__(self, url: str, port: serial.SerialBase) -> None:
        super().__init__(url)
        self._port = port

    @property
    def is_open(self) -> bool:
        return bool(self._port.is_open)

    def read(self, max_bytes: int = 256) -> bytes:
        # read(1) waits up to the timeout for the first byte; whatever else is already buffered is
        # then taken without waiting, so a short frame is returned at once instead of after the timeout.
        port = self._port
        try:
            data = port.read(1)
            waiting = _buffered(port) if data else 0
            while waiting and len(data) < max_bytes:
                data += port.read(min(waiting, max_bytes - len(data)))
                waiting = _buffered(port)
        except (serial.SerialException, OSError) as exc:
            raise TransportIOError(f"读取失败 {self.url}: {exc}") from exc
        self._log_rx(data)
        return data

    def write(self, data: bytes) -> None:
        self._log_tx(data)
        try:
            written = self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            if isinstance(exc, serial.SerialTimeoutException) or _errno_of(exc) == errno.ETIMEDOUT:
                raise TransportTimeout(f"写入超时 {self.url}") from exc
            raise TransportIOError(f"写入失败 {self.url}: {exc}") from exc
        if written is not None and written < len(data):
            raise TransportTimeout(f"写入超时 {self.url}: 仅写出 {written}/{len(data)} 字节")

    def close(self) -> None:
        try:
            self._port.close()
        except (serial.SerialException, OSError) as exc:
            log.warning("%s: error while closing: %s", self.url, exc)


class UsbTransport(Transport):
    """Bulk IN/OUT endpoints of one USB interface (pyusb), e.g. a ticket printer."""

    def __init__(
        self,
        url: str,
        device: Any,
        ep_in: Any,
        ep_out: Any,
        *,
        timeout: float,
        write_timeout: float,
    ) -> None:
        super().__init__(url)
        import usb.core

        self._usb_core = usb.core
        self._device = device
        self._ep_in = ep_in
        self._ep_out = ep_out
        # pyusb treats 0 as "wait forever", so never pass less than 1 ms.
        self._read_ms = max(1, round(timeout * 1000))
        self._write_ms = max(1, round(write_timeout * 1000))
        self._pending = b""
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def read(self, max_bytes: int = 256) -> bytes:
        if not self._open:
            raise TransportIOError(f"端口已关闭 {self.url}")
        if not self._pending:
            # A bulk read shorter than the packet size can overflow, so read whole packets and keep
            # the surplus for the next call.
            packet = self._ep_in.wMaxPacketSize or 64
            size = max(packet, -(-max_bytes // packet) * packet)
            try:
                self._pending = bytes(self._ep_in.read(size, self._read_ms))
            except self._usb_core.USBTimeoutError:
                return b""
            except (self._usb_core.USBError, OSError) as exc:
                raise TransportIOError(f"读取失败 {self.url}: {exc}") from exc
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        self._log_rx(data)
        return data

    def write(self, data: bytes) -> None:
        if not self._open:
            raise TransportIOError(f"端口已关闭 {self.url}")
        self._log_tx(data)
        try:
            written = self._ep_out.write(data, self._write_ms)
        except self._usb_core.USBTimeoutError as exc:
            raise TransportTimeout(f"写入超时 {self.url}") from exc
        except (self._usb_core.USBError, OSError) as exc:
            raise TransportIOError(f"写入失败 {self.url}: {exc}") from exc
        if written < len(data):
            raise TransportTimeout(f"写入超时 {self.url}: 仅写出 {written}/{len(data)} 字节")

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        import usb.util

        try:
            usb.util.dispose_resources(self._device)
        except (self._usb_core.USBError, OSError) as exc:
            log.warning("%s: error while releasing USB device: %s", self.url, exc)


def _errno_of(exc: BaseException | None) -> int | None:
    """Find the OS error number behind a (possibly wrapped) library exception."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, socket.gaierror):
            return errno.EHOSTUNREACH
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc.errno
        if isinstance(exc, TimeoutError):
            return errno.ETIMEDOUT
        if isinstance(exc, serial.SerialException) and exc.args and isinstance(exc.args[0], int):
            return exc.args[0]
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _open_error(url: str, exc: BaseException) -> TransportError:
    code = _errno_of(exc)
    if code in _ABSENT_ERRNOS:
        return DeviceNotFound(f"找不到设备 {url}: {exc}")
    return TransportIOError(f"无法打开 {url}: {exc}")


def _open_usb(url: str, *, timeout: float, write_timeout: float) -> UsbTransport:
    try:
        import usb.core
        import usb.util
    except ImportError as exc:
        raise NotSupported(f"{url}: 未安装 pyusb（pip install pyusb）") from exc

    parts = urlsplit(url)
    try:
        vid_text, pid_text = parts.netloc.split(":")
        vid, pid = int(vid_text, 16), int(pid_text, 16)
        interface = int(parse_qs(parts.query).get("interface", ["0"])[0])
    except ValueError as exc:
        raise ValueError(f"USB 地址格式应为 usb://VID:PID[?interface=N]（十六进制）: {url}") from exc

    try:
        device = usb.core.find(idVendor=vid, idProduct=pid)
    except usb.core.NoBackendError as exc:
        raise NotSupported(f"{url}: 找不到 libusb 后端") from exc
    if device is None:
        raise DeviceNotFound(f"找不到 USB 设备 {vid:04X}:{pid:04X}")

    try:
        # Printers are usually bound to the usblp kernel driver, which holds the interface.
        try:
            if device.is_kernel_driver_active(interface):
                device.detach_kernel_driver(interface)
        except NotImplementedError:
            pass
        device.set_configuration()
        intf = device.get_active_configuration()[(interface, 0)]
    except (usb.core.USBError, OSError, KeyError, IndexError) as exc:
        usb.util.dispose_resources(device)
        raise _open_error(url, exc) from exc

    def bulk(direction: int) -> Any:
        return usb.util.find_descriptor(
            intf,
            custom_match=lambda ep: (
                usb.util.endpoint_direction(ep.bEndpointAddress) == direction
                and usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
            ),
        )

    ep_in, ep_out = bulk(usb.util.ENDPOINT_IN), bulk(usb.util.ENDPOINT_OUT)
    if ep_in is None or ep_out is None:
        usb.util.dispose_resources(device)
        raise NotSupported(f"{url}: 接口 {interface} 没有批量输入/输出端点")
    return UsbTransport(url, device, ep_in, ep_out, timeout=timeout, write_timeout=write_timeout)


# ---------------------------------------------------------------------------------------- emulated


def emulated_url(device_id: str, control: str | None) -> str:
    """``emulated://HOST:PORT/DEVICE``: device ``device_id`` of the emulator whose control API listens at
    ``control`` (None: not configured, which opening the URL says)."""
    return f"emulated://{control or ''}/{quote(device_id, safe='')}"


def device_url(url: str, device_id: str, control: str | None) -> str:
    """The transport URL of a configured device: its ``url``, or for ``url: emulated`` the emulated
    transport through the emulator control address ``control`` (``emulator.control`` or ``--emulator``)."""
    return emulated_url(device_id, control) if url == EMULATED else url


class EmulatorDirectory:
    """Where the device emulator serves its devices, from its control API (``GET /devices``): the one
    resolver of emulated devices, asked each time one is opened (an emulator restarted elsewhere is
    found again)."""

    def __init__(self, control: str, timeout: float = EMULATOR_TIMEOUT_S) -> None:
        self.control = control
        self.timeout = timeout

    def devices(self) -> dict[str, str]:
        """Device id → URL of every device the emulator serves; DeviceNotFound when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://{self.control}/devices", timeout=self.timeout) as response:
                listing = json.load(response)
        except urllib.error.HTTPError as exc:
            raise TransportIOError(f"设备模拟器 {self.control} 的控制接口出错：HTTP {exc.code}") from exc
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            raise DeviceNotFound(f"设备模拟器 {self.control} 未应答（{reason}），请确认 hall-emu 已启动") from exc
        except ValueError as exc:
            raise TransportIOError(f"设备模拟器 {self.control} 的设备列表无效：{exc}") from exc
        if not isinstance(listing, list):
            raise TransportIOError(f"设备模拟器 {self.control} 的设备列表无效")
        return {str(entry["id"]): str(entry["url"]) for entry in listing
                if isinstance(entry, dict) and entry.get("id") and entry.get("url")}

    def url_of(self, device_id: str) -> str:
        """Where the emulator serves ``device_id``; DeviceNotFound when it does not (yet)."""
        url = self.devices().get(device_id)
        if url is None:
            raise DeviceNotFound(f"设备模拟器 {self.control} 未提供设备 {device_id}")
        return url


def _open_emulated(url: str, options: dict[str, Any]) -> Transport:
    parts = urlsplit(url)
    device = unquote(parts.path.lstrip("/")) if "://" in url else ""
    if not device:
        raise ValueError(f"模拟设备地址应为 emulated://主机:端口/设备编号: {url}")
    if not parts.netloc:
        raise DeviceNotFound(f"{device} 为模拟设备，但未配置模拟器控制地址（hallctl run --emulator 主机:端口 "
                             "或配置 emulator.control）")
    target = EmulatorDirectory(parts.netloc).url_of(device)
    if target.lower().startswith(EMULATED + ":"):
        raise NotSupported(f"设备模拟器把 {device} 又指向模拟地址 {target}")
    log.debug("%s is served at %s", url, target)
    return open_transport(target, **options)


def open_transport(
    url: str,
    *,
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    timeout: float = 0.2,
    write_timeout: float = 1.0,
) -> Transport:
    """Open the transport named by ``url``.

    Serial parameters are ignored where they mean nothing (TCP, USB). Invalid parameters raise
    ``ValueError``; an absent device raises :class:`DeviceNotFound`; an unknown scheme or a missing
    library raises :class:`NotSupported`.
    """
    if timeout is None or write_timeout is None or timeout < 0 or write_timeout <= 0:
        raise ValueError("every transport needs finite read and write timeouts")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == EMULATED or url == EMULATED:
        return _open_emulated(url, {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                                    "stopbits": stopbits, "timeout": timeout, "write_timeout": write_timeout})
    if scheme == "usb":
        return _open_usb(url, timeout=timeout, write_timeout=write_timeout)
    pyserial_url = "socket://" + url.split("://", 1)[1] if scheme == "tcp" else url
    try:
        port = serial.serial_for_url(pyserial_url, do_not_open=True)
    except ValueError as exc:
        raise NotSupported(f"不支持的地址 {url}: {exc}") from exc
    port.baudrate = baudrate
    port.bytesize = bytesize
    port.parity = parity
    port.stopbits = stopbits
    port.timeout = timeout
    # pyserial's RFC 2217 client refuses write_timeout; its writes are bounded by its socket's
    # timeout instead, which is set to ours once the port is open.
    port.write_timeout = None if scheme == "rfc2217" else write_timeout
    try:
        port.open()
    except (serial.SerialException, OSError) as exc:
        raise _open_error(url, exc) from exc
    if scheme == "rfc2217":
        port._socket.settimeout(write_timeout)
    log.debug("opened %s (%d %d%s%s)", url, baudrate, bytesize, parity, stopbits)
    return SerialTransport(url, port)
