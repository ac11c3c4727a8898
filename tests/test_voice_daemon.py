"""End to end: calls in the daemon → announcer → speaker driver → emulated speaker over TCP.

The hall display's own MQTT subscription (its role's events, not "all") receives the
``announcement_*`` events, and the emulator's record of what was played decodes to the calls.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from drivers.codecs.audio_frames import read_wav
from hall_controller.bus.client import HallClient
from hall_controller.service import Actor
from hall_controller.voice.pack import load_pack
from tests.harness import device_hall, passwords, wait_until
from tests.test_voice_compose import spoken_tokens

PACK = load_pack()


def _voice(data: dict) -> None:
    data["voice"] = {**data.get("voice", {}), "repeat": 1}


def test_two_calls_50_ms_apart_are_announced_whole_in_call_order(tmp_path: Path) -> None:
    hall = device_hall(tmp_path, "tcp", mutate=_voice)
    try:
        speaker = hall.emu.devices["speaker-1"]
        wait_until(lambda: hall.service.snapshot()["devices"].get("speaker-1", {}).get("online"), 5,
                   "speaker online")
        host, port = hall.daemon.mqtt_address
        display = HallClient("display-1", passwords(hall.config_path)["display-1"], host, port,
                             hall.config.hall_id, role="display")   # the display app's own subscriptions
        display.connect(timeout=10)
        try:
            assert hall.issue("consult") == "A001" and hall.issue("mediation") == "C001"
            w3, w6 = Actor("window-3", "window", 3), Actor("window-6", "window", 6)
            hall.service.execute(w3, "login", {"staff_id": "S003", "pin": "1234"})
            hall.service.execute(w6, "login", {"staff_id": "S006", "pin": "1234"})
            hall.service.execute(w3, "call_next")
            time.sleep(0.05)
            hall.service.execute(w6, "call_next")
            hall.service.execute(w6, "recall")   # C001 still queued behind A001: merged
            wait_until(lambda: len(hall.device_events("announcement_finished")) == 2, 30, "two announcements")
            started = display.wait_for_event(lambda e: e["type"] == "announcement_started"
                                             and e["ticket"]["number"] == "C001", timeout=5)
            display.wait_for_event(lambda e: e["type"] == "announcement_finished"
                                   and e["ticket"]["number"] == "C001", timeout=5)
        finally:
            display.close()
        assert started["window"] == 6 and started["merged_recalls"] == 1 and started["zone"] == "speaker-1"

        records = speaker.api_announcements(_request())
        assert [r["text"] for r in records] == ["请A001号到3号窗口办理", "请C001号到6号窗口办理"]
        first, second = records
        gap = (datetime.fromisoformat(second["start"]) - datetime.fromisoformat(first["start"])).total_seconds()
        assert gap >= first["duration"] * 0.98          # the second started after the first had ended
        for record, tokens in ((first, ["A", "零", "零", "一", "号", "到", "三"]),
                               (second, ["C", "零", "零", "一", "号", "到", "六"])):
            info = read_wav(Path(record["wav"]).read_bytes())
            assert info.sample_rate == 22050 and abs(info.duration - record["duration"]) < 0.001
            assert spoken_tokens(info.frames, PACK.clips) == ["chime", "请", *tokens, "号", "窗口", "办理"]
        # in the event log, in order, each finished before the next started
        kinds = [(e["type"], e["ticket"]["number"]) for e in hall.events if e["type"].startswith("announcement_")]
        assert kinds == [("announcement_started", "A001"), ("announcement_finished", "A001"),
                         ("announcement_started", "C001"), ("announcement_finished", "C001")]
    finally:
        hall.close()


def _request():
    from hw_emulators.device import Request

    return Request({}, {}, ())
