"""Call → LED latency: from ``service.execute("call_next")`` to the last byte of the LED frame on the wire.

The whole real path runs: HallService (durable SQLite commit) → event → DeviceManager worker →
window bus driver → TCP → emulated controller and LED screen. Loopback TCP has no baud rate, so a
small proxy between the driver and the emulator plays the RS-485 line: it passes bytes on no faster
than the profile's baud rate (10 bits a character for 8N1) and notes when each chunk's last byte has
"left the wire". For each call the bench prints, over ``--calls`` calls (one ticket issued before
each, outside the timing, on an idle bus):

* measured: call → last byte of the LED frame delivered to the emulated screen;
* wire: the frame's theoretical wire time, bytes × 10 bits / baud;
* overhead: measured − wire (the software part: commit, event, worker, driver, TCP), p50 and p99;
* how it splits into the time inside ``execute`` (engine + fsync'ed commit) and after it (event,
  worker, driver, TCP: the device layer's own share).

Target: overhead ≤ 10 ms at p99. Run: ``.venv/bin/python bench/bus_latency.py`` (loopback only,
stops by itself).
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from device_profiles import load_profile
from drivers.codecs.window_bus import encode_led, led_framing, led_text_frame
from hall_controller.clock import SystemClock
from hall_controller.config import parse_config, sample_config_text
from hall_controller.devices import DeviceManager
from hall_controller.service import Actor, HallService
from hall_controller.store import Store
from hw_emulators.hall import EmulatedHall

WINDOW = 3
KIOSK = Actor("kiosk-1", "kiosk")
CLERK = Actor(f"window-{WINDOW}", "window", WINDOW)
BITS_PER_CHAR = 10


class PacedLine:
    """A TCP proxy that delivers host → device bytes at ``baud``, like a UART shifting them out."""

    def __init__(self, target: tuple[str, int], baud: int) -> None:
        self.char_time = BITS_PER_CHAR / baud
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._cond = threading.Condition()
        self._stream = bytearray()  # every byte delivered to the device, in order
        self._delivered: list[tuple[int, float]] = []  # (stream length after a chunk, perf_counter)
        self._busy = False
        threading.Thread(target=self._accept, name="paced-line", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                host, _ = self._server.accept()
            except OSError:
                return
            device = socket.create_connection(self._target)
            for sock in (host, device):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump_back, args=(device, host), daemon=True).start()
            threading.Thread(target=self._pump_out, args=(host, device), daemon=True).start()

    def _pump_out(self, host: socket.socket, device: socket.socket) -> None:
        line_free = 0.0
        while data := _recv(host):
            with self._cond:
                self._busy = True
            start = max(time.perf_counter(), line_free)
            line_free = start + len(data) * self.char_time
            while (left := line_free - time.perf_counter()) > 0:
                time.sleep(left)
            device.sendall(data)
            with self._cond:
                self._stream += data
                self._delivered.append((len(self._stream), time.perf_counter()))
                self._busy = False
                self._cond.notify_all()
        device.close()

    @staticmethod
    def _pump_back(device: socket.socket, host: socket.socket) -> None:
        while data := _recv(device):
            host.sendall(data)
        host.close()

    def mark(self) -> int:
        with self._cond:
            return len(self._stream)

    def wait_frame(self, frame: bytes, since: int, timeout: float = 2.0) -> float:
        """perf_counter when the last byte of ``frame`` (sent after stream offset ``since``) was delivered."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (pos := self._stream.find(frame, since)) < 0:
                if not self._cond.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"frame {frame.hex(' ')} not seen on the line")
            end = pos + len(frame)
            for length, at in self._delivered:
                if length >= end:
                    return at - (length - end) * self.char_time
        raise AssertionError("unreachable: the frame lies within the delivered stream")

    def wait_idle(self, quiet: float) -> None:
        """Until nothing has been on the line for ``quiet`` seconds."""
        while True:
            with self._cond:
                last = self._delivered[-1][1] if self._delivered else 0.0
                busy = self._busy
            left = last + quiet - time.perf_counter()
            if not busy and left <= 0:
                return
            time.sleep(max(left, 0.001))

    def close(self) -> None:
        self._server.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def bench(calls: int, warmup: int, tmp: Path) -> int:
    data = yaml.safe_load(sample_config_text())
    keep = {"bus-1", f"led-{WINDOW}", f"keypad-{WINDOW}"}
    data["devices"] = [d for d in data["devices"] if d["id"] in keep]
    for window in data["windows"]:
        window["devices"] = [d for d in window["devices"] if d in keep]
    config = parse_config(data, "sample", tmp)
    led = next(d for d in config.devices if d.kind == "led")
    framing = led_framing(load_profile(led.profile))
    baud = load_profile("dory-controller").transport["baudrate"]

    emu = EmulatedHall(config.devices, link="tcp")
    emu.start()
    host, port = emu.device_urls()["bus-1"].removeprefix("socket://").rsplit(":", 1)
    line = PacedLine((host, int(port)), baud)
    store = Store(f"sqlite:///{tmp / 'bench.db'}")
    service = HallService(config, store, SystemClock(), secret=b"bench")
    manager = DeviceManager(config, service, device_urls={"bus-1": line.url})
    manager.start()
    try:
        deadline = time.monotonic() + 10
        while not service.snapshot()["devices"].get("bus-1", {}).get("online"):
            if time.monotonic() > deadline:
                raise SystemExit("the emulated bus did not come online")
            time.sleep(0.02)
        service.execute(CLERK, "login", {"staff_id": "S003", "pin": "1234"})
        gap = max(0.001, 3.5 * BITS_PER_CHAR / baud)
        measured, inside, wire = [], [], []
        for i in range(warmup + calls):
            service.execute(KIOSK, "issue_ticket", {"service": "consult"})
            line.wait_idle(quiet=2 * gap)
            since = line.mark()
            t0 = time.perf_counter()
            ticket = service.execute(CLERK, "call_next", {"finish_current": True})["ticket"]
            t1 = time.perf_counter()
            frame = encode_led(led_text_frame(led.address, ticket["number"], None, framing), framing)
            t_end = line.wait_frame(frame, since)
            if i >= warmup:
                measured.append((t_end - t0) * 1000)
                inside.append((t1 - t0) * 1000)
                wire.append(len(frame) * BITS_PER_CHAR / baud * 1000)
        # The emulated screen decodes what the line delivered: it must end on the last number.
        deadline = time.monotonic() + 1.0
        while emu.led(WINDOW).text != ticket["number"] and time.monotonic() < deadline:
            time.sleep(0.01)
        shown = emu.led(WINDOW).text
    finally:
        manager.stop()
        line.close()
        emu.stop()
        store.close()

    overhead = [m - w for m, w in zip(measured, wire, strict=True)]
    device = [o - c for o, c in zip(overhead, inside, strict=True)]
    frame_bytes = round(wire[0] * baud / BITS_PER_CHAR / 1000)
    print(f"calls: {calls} (after {warmup} warm-up), LED frame {frame_bytes} bytes at {baud} baud 8N1; "
          f"LED {WINDOW} last showed {shown!r}")
    print(f"wire time (theory):           {wire[0]:7.2f} ms")
    print(f"measured call → last byte:    p50 {pct(measured, 50):7.2f} ms   p99 {pct(measured, 99):7.2f} ms   "
          f"max {max(measured):7.2f} ms")
    print(f"overhead = measured − wire:   p50 {pct(overhead, 50):7.2f} ms   p99 {pct(overhead, 99):7.2f} ms   "
          f"max {max(overhead):7.2f} ms")
    print(f"  of which execute (commit):  p50 {pct(inside, 50):7.2f} ms   p99 {pct(inside, 99):7.2f} ms")
    print(f"  after execute (devices):    p50 {pct(device, 50):7.2f} ms   p99 {pct(device, 99):7.2f} ms")
    ok = pct(overhead, 99) <= 10.0
    print(f"target overhead ≤ 10 ms at p99: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    if args.calls < 100:
        ap.error("--calls must be at least 100 for a p99")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        return bench(args.calls, args.warmup, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
