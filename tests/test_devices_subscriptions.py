"""Device handlers hear the service only between start() and stop(), and `emulated` devices are opened
through the transport layer's `emulated://` URL.

The real HallService on SQLite and the real DeviceManager of the sample hall; its devices are left at
`url: emulated` with nothing answering at the emulator control address, so every link stays offline
and retries (what a daemon started before the emulator does).
"""

from __future__ import annotations

from typing import Any

import pytest

from drivers.transport import DeviceNotFound, EmulatorDirectory, emulated_url, open_transport
from hall_controller.config import parse_config
from hall_controller.devices import DeviceManager
from hall_controller.service import Actor, HallService
from hall_controller.store import Store
from hw_emulators.hall import EmulatedHall

from .conftest import sample_data
from .harness import free_port, wait_until

KIOSK = Actor("kiosk-1", "kiosk")
WINDOW_3 = Actor("window-3", "window", 3)


@pytest.fixture
def service(tmp_path, clock):
    data = sample_data()
    data["emulator"]["control"] = f"127.0.0.1:{free_port()}"      # nothing answers there
    config = parse_config(data, "sample.yaml", tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'hall.db'}")
    yield HallService(config, store, clock, secret=b"k")
    store.close()


def call_one(service: HallService) -> None:
    service.execute(KIOSK, "issue_ticket", {"service": "consult"})
    service.execute(WINDOW_3, "call_next", {"finish_current": True})


def test_unsubscribe_stops_the_events_of_that_subscriber_only(service):
    first: list[str] = []
    second: list[str] = []
    drop_first = service.subscribe(lambda e: first.append(e["type"]))
    service.subscribe(lambda e: second.append(e["type"]))
    service.execute(KIOSK, "issue_ticket", {"service": "consult"})
    assert first == second == ["ticket_issued"]                      # positive control
    drop_first()
    drop_first()                                                     # twice is harmless
    service.execute(KIOSK, "issue_ticket", {"service": "consult"})
    assert first == ["ticket_issued"] and second == ["ticket_issued", "ticket_issued"]


def test_a_handler_hears_events_from_start_to_stop_only(service):
    service.execute(WINDOW_3, "login", {"staff_id": "S003", "pin": "1234"})
    manager = DeviceManager(service.config, service)
    bus, speaker = manager.handler("bus-1"), manager.handler("speaker-1")
    heard: dict[str, list[str]] = {"bus": [], "speaker": []}

    def spy(name: str, real: Any) -> Any:
        return lambda event: (heard[name].append(event["type"]), real(event))

    # What each handler subscribes in start(): observed, and passed on.
    bus._on_event = spy("bus", bus._on_event)
    speaker.announcer.on_event = spy("speaker", speaker.announcer.on_event)

    call_one(service)
    assert heard == {"bus": [], "speaker": []}                       # built, not started: deaf
    manager.start()
    try:
        call_one(service)
        assert "ticket_called" in heard["bus"] and "ticket_called" in heard["speaker"]
        assert speaker.announcer.queue.pending()                     # the call waits for the speaker
    finally:
        manager.stop()
    before = {name: list(types) for name, types in heard.items()}
    call_one(service)
    assert heard == before                                           # stopped: nothing more arrives
    # started again (a reloaded config), it hears again, once per event
    manager.start()
    try:
        call_one(service)
        assert heard["bus"].count("ticket_called") == before["bus"].count("ticket_called") + 1
    finally:
        manager.stop()


def test_emulated_devices_open_through_the_emulator_once_it_answers(service, tmp_path):
    """`url: emulated` goes offline naming the missing emulator, and comes up when the emulator does,
    through the emulated:// transport (no lookup of its own in the device layer)."""
    manager = DeviceManager(service.config, service)
    link = manager.handler("printer-1").link
    control = service.config.emulator_control
    assert link.url == emulated_url("printer-1", control) == f"emulated://{control}/printer-1"
    with pytest.raises(DeviceNotFound, match=f"设备模拟器 {control} 未应答"):
        open_transport(link.url)
    manager.start()
    emulated = EmulatedHall(service.config.devices, link="tcp")
    emulated.start()
    try:
        wait_until(lambda: service.snapshot()["devices"].get("printer-1", {}).get("online") is False, 5,
                   "printer offline while nothing answers")
        host, port = control.rsplit(":", 1)
        emulated.serve_control(host, int(port))
        wait_until(lambda: service.snapshot()["devices"]["printer-1"].get("online"), 10,
                   "printer online once the emulator answers")
        assert link.driver is not None and link.driver.url.startswith("emulated://")
        assert EmulatorDirectory(control).url_of("printer-1") == emulated.device_urls()["printer-1"]
        with pytest.raises(DeviceNotFound, match="未提供设备 printer-9"):
            EmulatorDirectory(control).url_of("printer-9")
    finally:
        manager.stop()
        emulated.stop()
