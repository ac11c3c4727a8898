"""The card reader driver against the emulated reader over real links: pty, TCP and RFC 2217.

The RFC 2217 case reproduces the kiosk set-up of the README: the reader hangs on the kiosk PC,
whose serial server (ser2net there, pyserial's ``PortManager`` here, as in pyserial's own
``rfc2217_server.py`` example) offers it on a TCP port; the daemon opens ``rfc2217://host:port``.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import serial
import serial.rfc2217

from device_profiles import load_profile
from drivers.base import CardReaderDriver
from drivers.card_reader import open_card_reader
from drivers.codecs.gat467 import SW3_READ_FAILED, Response
from drivers.registry import spec
from drivers.transport import TransportTimeout
from hall_controller.config import DeviceConfig
from hall_controller.devices.link import DeviceLink
from hw_emulators.card_reader import EmulatedCardReader, card_from_fields
from hw_emulators.device import EmulatedDevice
from hw_emulators.link import PtyLink, TcpLink
from tests.harness import wait_until

PROFILE = load_profile("dory-dl6009-card-reader")
PHOTO = bytes(range(200, 256)) * 8
CARD = {"name": "李秀英", "sex": "女", "nation": "回", "birth": "19480315", "address": "上海市黄浦区福州路100号",
        "id_number": "310101194803150022", "issuer": "上海市公安局黄浦分局", "valid_from": "20100101",
        "valid_to": "长期", "photo": base64.b64encode(PHOTO).decode()}
OTHER = {"name": "王五", "id_number": "440304199001010011", "valid_to": "20300101"}


@pytest.fixture(params=["pty", "tcp"])
def emu(request) -> Iterator[EmulatedCardReader]:
    link = PtyLink("card-reader-1") if request.param == "pty" else TcpLink("card-reader-1")
    device = EmulatedCardReader("card-reader-1", PROFILE.name, PROFILE, link, kiosk="kiosk-1")
    device.start()
    yield device
    device.stop()


@pytest.fixture
def pty_emu() -> Iterator[EmulatedCardReader]:
    device = EmulatedCardReader("card-reader-1", PROFILE.name, PROFILE, PtyLink("card-reader-1"))
    device.start()
    yield device
    device.stop()


class Reader:
    """A driver with its callbacks recorded."""

    def __init__(self, url: str, profile=PROFILE, **options) -> None:
        self.cards: list = []
        self.errors: list[Exception] = []
        self.removed: list[float] = []
        self.failed: list[str] = []
        self.driver = open_card_reader(url, [profile], on_card=self.cards.append, on_error=self.errors.append,
                                       on_card_removed=lambda: self.removed.append(time.monotonic()),
                                       on_card_failed=self.failed.append, **options)

    def __enter__(self) -> Reader:
        self.driver.open()
        return self

    def __exit__(self, *exc) -> None:
        self.driver.close()


def finds_after(emu: EmulatedCardReader, since: float, count: int) -> bool:
    return sum(1 for t, name in list(emu.history) if name == "find_card" and t > since) >= count


def test_registered_for_the_kind() -> None:
    assert spec("card_reader").factory is open_card_reader
    assert spec("card_reader").codec == "drivers.codecs.gat467"


def test_reads_a_card_once_until_it_is_removed(emu) -> None:
    with Reader(emu.url) as reader:
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.cards, what="card read")
        card = reader.cards[0]
        assert (card.name, card.sex, card.nation, card.birth, card.address, card.id_number, card.issuer,
                card.valid_from, card.valid_to) == ("李秀英", "女", "回", "19480315", "上海市黄浦区福州路100号",
                                                    "310101194803150022", "上海市公安局黄浦分局", "20100101", "长期")
        assert card.photo == PHOTO.ljust(1024, b"\0")
        # it stays on the reader: polled, not read again
        read_at = time.monotonic()
        wait_until(lambda: finds_after(emu, read_at, 3), what="three more polls")
        assert len(reader.cards) == 1 and emu.reads == 1
        emu.remove()
        removed = time.monotonic()
        wait_until(lambda: finds_after(emu, removed, 1), what="a poll after removal")
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: len(reader.cards) == 2, what="the same card read again after removal")
        assert emu.reads == 2 and not reader.errors
        assert reader.driver.health().detail["sam"] == "操作成功"


def test_a_card_put_in_place_of_another_is_read(emu) -> None:
    with Reader(emu.url) as reader:
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.cards, what="first card")
        emu.insert(card_from_fields(OTHER))
        wait_until(lambda: len(reader.cards) == 2, what="second card")
        assert reader.cards[1].name == "王五" and reader.cards[1].valid_to == "20300101"


def test_a_card_taken_away_is_reported_once(emu) -> None:
    """The daemon forgets a card that left with its holder: the driver says when it is taken away."""
    with Reader(emu.url) as reader:
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.cards, what="card read")
        read_at = time.monotonic()
        wait_until(lambda: finds_after(emu, read_at, 2), what="polls with the card lying there")
        assert reader.removed == []                  # positive control: lying there is not removed
        emu.remove()
        wait_until(lambda: reader.removed, what="removal reported")
        removed = time.monotonic()
        wait_until(lambda: finds_after(emu, removed, 3), what="polls of the empty reader")
        assert len(reader.removed) == 1 and reader.failed == []
        # a card laid in place of another: the field is seen empty in between, so A's removal comes first
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: len(reader.cards) == 2, what="second read")
        emu.insert(card_from_fields(OTHER))
        wait_until(lambda: len(reader.cards) == 3, what="third read")
        assert len(reader.removed) == 2 and reader.cards[2].name == "王五"


def test_a_card_taken_away_mid_read_is_never_delivered_in_part(emu) -> None:
    """Found and selected, then gone before read base info (41): no card, one failure, then a good read."""
    with Reader(emu.url) as reader:
        emu.remove(during_read=True)
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.failed, what="failed read reported")
        assert reader.failed == ["read_failed"] and reader.cards == []
        assert emu.requests["select_card"] >= 1 and emu.reads == 0 and emu.state()["card"] is None
        gone = time.monotonic()
        wait_until(lambda: finds_after(emu, gone, 3), what="polls of the empty reader")
        assert reader.failed == ["read_failed"] and reader.removed == [] and reader.cards == []
        emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.cards, what="the card put back read whole")
        assert reader.cards[0].name == "李秀英" and reader.failed == ["read_failed"]
        assert reader.driver.stats.read_failures == 1 and not reader.errors


def test_a_read_that_keeps_failing_is_reported_once_per_card(pty_emu, monkeypatch) -> None:
    """A card that lies there and cannot be read is retried every poll but reported once."""
    answer = pty_emu._answer

    def failing_read(request):
        if pty_emu.framing.command_name(request) == "read_base_info":
            return Response(SW3_READ_FAILED)
        return answer(request)

    monkeypatch.setattr(pty_emu, "_answer", failing_read)
    with Reader(pty_emu.url) as reader:
        pty_emu.insert(card_from_fields(CARD))
        wait_until(lambda: reader.driver.stats.read_failures >= 3, what="three failed reads")
        assert reader.failed == ["read_failed"] and reader.cards == []
        pty_emu.remove()
        wait_until(lambda: reader.driver.stats.polls >= 2 and not reader.driver._failure_told, what="field empty")
        pty_emu.insert(card_from_fields(CARD))
        wait_until(lambda: len(reader.failed) == 2, what="the next card's failure reported")


def intervals(emu: EmulatedCardReader, count: int) -> list[float]:
    wait_until(lambda: sum(1 for _, n in list(emu.history) if n == "find_card") >= count + 1, timeout=10,
               what=f"{count + 1} polls")
    times = [t for t, n in list(emu.history) if n == "find_card"][: count + 1]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# Bytes arrive at the emulator with some scheduling jitter; a poll sent on time may look a few ms early.
JITTER = 0.02


@pytest.mark.parametrize(("poll_ms", "expected"), [(None, 0.3), (100, 0.3), (500, 0.5)])
def test_polls_no_faster_than_the_profile_allows(pty_emu, poll_ms, expected) -> None:
    with Reader(pty_emu.url, poll_ms=poll_ms):
        gaps = intervals(pty_emu, 4)
    assert min(gaps) >= expected - JITTER, gaps
    assert max(gaps) < expected + 0.5, gaps    # and it does keep polling


def test_sam_status_on_request(pty_emu) -> None:
    with Reader(pty_emu.url) as reader:
        assert reader.driver.sam_status() == "操作成功"
        assert pty_emu.requests["sam_status"] >= 2   # once on open, once asked


@pytest.mark.parametrize("mode", ["silent", "corrupt"])
def test_a_reader_that_stops_answering_is_reported_once(pty_emu, mode) -> None:
    with Reader(pty_emu.url) as reader:
        wait_until(lambda: pty_emu.requests["find_card"] >= 1, what="polling")
        pty_emu.set_fault(mode)
        wait_until(lambda: reader.errors, what="error reported")
        assert isinstance(reader.errors[0], TransportTimeout)
        assert "读卡器无应答" in str(reader.errors[0])
        assert not reader.driver.health().online
        (thread,) = reader.driver._threads
        wait_until(lambda: not thread.is_alive(), what="polling thread ended")   # nothing more is sent
        assert len(reader.errors) == 1
    with pytest.raises(Exception, match="未打开"):
        reader.driver.sam_status()


def test_unplugged_mid_read_goes_offline_once_and_comes_back(emu, monkeypatch) -> None:
    pulled = threading.Event()
    answer = emu._answer

    def pull_the_cable_on_read(request):
        """The cable comes out while the read is on its way: no reply leaves, the link goes down."""
        if not pulled.is_set() and emu.framing.command_name(request) == "read_base_info":
            pulled.set()
            EmulatedDevice.set_fault(emu, "disconnect")      # the reply is swallowed ...
            threading.Thread(target=emu.link.drop).start()   # ... and the link is gone
        return answer(request)

    monkeypatch.setattr(emu, "_answer", pull_the_cable_on_read)
    cards: list = []
    states: list[tuple[bool, str | None]] = []
    device = DeviceConfig("card-reader-1", "card_reader", PROFILE.name, "emulated", kiosk="kiosk-1")
    opens: list[float] = []
    link = DeviceLink(device, interface=CardReaderDriver, url=emu.url, profiles_dir=None, on_up=lambda _: None,
                      on_status=lambda _, online, error: states.append((online, error)),
                      driver_options={"on_card": cards.append})
    open_driver = link._open

    def counted_open() -> CardReaderDriver:
        opens.append(time.monotonic())
        return open_driver()

    monkeypatch.setattr(link, "_open", counted_open)
    link.start()
    try:
        wait_until(lambda: states == [(True, None)], what="online")
        emu.insert(card_from_fields(CARD))
        wait_until(pulled.is_set, what="read requested")
        wait_until(lambda: len(states) == 2, timeout=5, what="offline")
        assert states[1][0] is False and states[1][1]
        assert cards == []
        attempts = len(opens)
        wait_until(lambda: len(opens) >= attempts + 2, what="two failed reopens")
        assert len(states) == 2           # still the one offline report
        emu.clear_fault()
        wait_until(lambda: len(states) == 3, timeout=8, what="back online")
        assert states[2] == (True, None)
        wait_until(lambda: cards, what="the card read after the reconnection")
        assert len(cards) == 1 and cards[0].name == "李秀英"
    finally:
        link.stop()


def _watched_link(emu: EmulatedCardReader, monkeypatch) -> tuple[DeviceLink, list, list[float]]:
    """A supervised reader link on ``emu``: (link, its (online, error) reports, the times it opened)."""
    states: list[tuple[bool, str | None]] = []
    opens: list[float] = []
    device = DeviceConfig("card-reader-1", "card_reader", PROFILE.name, "emulated", kiosk="kiosk-1")
    link = DeviceLink(device, interface=CardReaderDriver, url=emu.url, profiles_dir=None, on_up=lambda _: None,
                      on_status=lambda _, online, error: states.append((online, error)))
    open_driver = link._open

    def counted_open() -> CardReaderDriver:
        opens.append(time.monotonic())
        return open_driver()

    monkeypatch.setattr(link, "_open", counted_open)
    return link, states, opens


def test_a_reader_that_answers_too_late_goes_offline_once_not_on_and_off(emu, monkeypatch) -> None:
    """Replies 1.5 s late, past the reply timeout (0.5 s, read for at most twice that): the link must
    not count the reader up after its settle time (0.3 s) and down again at the timeout, reopen after
    reopen — nor on a late reply that lands in the next exchange."""
    link, states, opens = _watched_link(emu, monkeypatch)
    link.start()
    try:
        wait_until(lambda: states == [(True, None)], what="online")
        emu.set_fault("delay", 1500)
        wait_until(lambda: len(states) >= 2, timeout=5, what="offline")
        attempts = len(opens)
        wait_until(lambda: len(opens) >= attempts + 3, timeout=15, what="three more reopens")
        assert [online for online, _ in states] == [True, False], states    # one change, no flapping
        emu.clear_fault()
        wait_until(lambda: len(states) == 3, timeout=10, what="back online")
        assert states[2] == (True, None)
    finally:
        link.stop()


def test_a_reader_that_answers_slowly_but_in_time_stays_online(emu, monkeypatch) -> None:
    link, states, _ = _watched_link(emu, monkeypatch)
    link.start()
    try:
        wait_until(lambda: states == [(True, None)], what="online")
        emu.set_fault("delay", 200)        # within the 0.5 s reply timeout
        polls = emu.requests["find_card"]
        wait_until(lambda: emu.requests["find_card"] >= polls + 5, timeout=10, what="five slow polls")
        assert states == [(True, None)]
    finally:
        link.stop()


# ---------------------------------------------------------------------------------- RFC 2217

class PtySerial(serial.Serial):
    """A pty has no modem lines: report them idle and ignore RTS/DTR, as a 3-wire cable would."""

    cts = dsr = ri = cd = False

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass


class Rfc2217Server:
    """The kiosk PC's serial server: RFC 2217 on a TCP port in front of a serial device (a pty)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.negotiated = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        port = PtySerial(self.device, timeout=0.05)
        lock = threading.Lock()

        class Connection:
            def write(self, data: bytes) -> None:
                with lock:
                    conn.sendall(data)

        manager = serial.rfc2217.PortManager(port, Connection())

        def to_network() -> None:
            while not self._stop.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    Connection().write(b"".join(manager.escape(data)))

        thread = threading.Thread(target=to_network, daemon=True)
        self._threads.append(thread)
        thread.start()
        try:
            while not self._stop.is_set():
                data = conn.recv(4096)
                if not data:
                    break
                port.write(b"".join(manager.filter(data)))
                if manager._client_is_rfc2217:
                    self.negotiated.set()
        except OSError:
            pass
        finally:
            self._stop.set()
            conn.close()
            thread.join(2)
            port.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(2)


def test_reader_through_an_rfc2217_link(pty_emu) -> None:
    server = Rfc2217Server(pty_emu.url)
    try:
        # Two more hops (the server's thread and TCP) than a local port: a site profile for a reader
        # behind a serial server would allow as much, so a loaded test machine does not time out.
        remote = replace(PROFILE, transport={**PROFILE.transport, "timeout": 2.0})
        with Reader(f"rfc2217://127.0.0.1:{server.port}", remote) as reader:
            assert server.negotiated.wait(5), "the client did not speak RFC 2217"
            pty_emu.insert(card_from_fields(CARD))
            wait_until(lambda: reader.cards, what="card read over rfc2217")
            assert reader.cards[0].id_number == "310101194803150022"
            assert reader.cards[0].photo[:len(PHOTO)] == PHOTO
            assert reader.driver.sam_status() == "操作成功" and not reader.errors
    finally:
        server.close()


# ------------------------------------------------------------------------- inserted fields

@pytest.mark.parametrize(("change", "message"), [
    ({"name": None}, "name 须为非空字符串"),
    ({"name": ""}, "name 须为非空字符串"),
    ({"name": "张" * 16}, "name 过长"),
    ({"id_number": "31010119480315002"}, "id_number 须为18位"),
    ({"id_number": "31010119480315002Y"}, "id_number 须为18位"),
    ({"sex": "M"}, "sex 须为 男 或 女"),
    ({"nation": "火星"}, "未知民族"),
    ({"nation": 99}, "未知民族"),
    ({"birth": "19480230"}, "birth 须为有效日期"),
    ({"valid_to": "2030-01-01"}, "valid_to 须为有效日期"),
    ({"valid_from": 2010}, "valid_from 须为有效日期"),
    ({"address": "路" * 36}, "address 过长"),
    ({"photo": "not base64!"}, "photo 不是有效的 base64"),
    ({"photo": base64.b64encode(bytes(1025)).decode()}, "照片最多 1024 字节"),
    ({"colour": "red"}, "未知字段 colour"),
])
def test_inserted_fields_are_checked(change, message) -> None:
    body = {key: value for key, value in {**CARD, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=message):
        card_from_fields(body)


def test_inserted_card_defaults_and_codes() -> None:
    card = card_from_fields({"name": "王五", "id_number": "44030419900101001x", "nation": "02"})
    assert (card.sex, card.birth, card.nation, card.valid_to, card.id_number) == (
        "男", "19900101", "蒙古", "长期", "44030419900101001X")
    # the check digit is not the emulator's business: the daemon must refuse this card itself
    assert card_from_fields({**CARD, "id_number": "310101194803150021"}).id_number.endswith("21")
    with pytest.raises(ValueError, match="JSON 对象"):
        card_from_fields(["name"])
