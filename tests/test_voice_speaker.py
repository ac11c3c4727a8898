"""Speaker drivers against real outputs: the emulated speaker over TCP and pty, the control API, and
miniaudio's null output (real-time playback with no sound card)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import pytest

from device_profiles import load_profile
from drivers.codecs.audio_frames import ERROR, PLAY, AudioFrameDecoder, encode, read_wav
from drivers.registry import spec
from drivers.speaker import AudioOutSpeaker, LinkSpeaker, open_speaker
from drivers.transport import DeviceNotFound, TransportError, TransportTimeout
from hall_controller.voice.composer import Composer
from hall_controller.voice.pack import load_pack
from hall_controller.voice.template import VoiceTemplate
from hw_emulators.hall import EmulatedHall
from hw_emulators.link import PtyLink, TcpLink
from hw_emulators.speaker import EmulatedSpeaker
from tests.harness import wait_until
from tests.test_voice_compose import spoken_tokens

PROFILE = load_profile("pc-speaker")
PACK = load_pack()
SHORT = Composer(PACK, VoiceTemplate("{number}号", frozenset(PACK.clips)))


@pytest.fixture(params=["tcp", "pty"])
def emu(request) -> Iterator[EmulatedSpeaker]:
    link = TcpLink("speaker-1") if request.param == "tcp" else PtyLink("speaker-1")
    device = EmulatedSpeaker("speaker-1", PROFILE.name, PROFILE, link, zone="一楼大厅")
    device.start()
    yield device
    device.stop()


def test_registered_with_its_codec() -> None:
    kind = spec("speaker")
    assert kind.codec == "drivers.codecs.audio_frames" and kind.factory is open_speaker
    assert isinstance(open_speaker("socket://127.0.0.1:9", [PROFILE]), LinkSpeaker)
    assert isinstance(open_speaker("audio://default"), AudioOutSpeaker)
    with pytest.raises(ValueError, match="绝对路径"):
        open_speaker("wavdir://relative/folder")


def test_emulated_speaker_plays_in_real_time_and_records_it(emu: EmulatedSpeaker) -> None:
    errors: list[Exception] = []
    driver = open_speaker(emu.url, [PROFILE], on_error=errors.append)
    driver.open()
    try:
        first = SHORT.compose("A1", None, 1)
        second = SHORT.compose("B2", None, 2)
        t0 = time.monotonic()
        assert driver.play(first.wav, {"text": first.text, "tokens": first.tokens}) == pytest.approx(first.duration, abs=0.001)
        t1 = time.monotonic()
        driver.play(second.wav, {"text": second.text, "tokens": second.tokens, "zone": "二楼"})
        t2 = time.monotonic()
    finally:
        driver.close()
    assert t1 - t0 >= first.duration * 0.98 and t2 - t1 >= second.duration * 0.98
    records = emu.api_announcements(_request())
    assert [r["text"] for r in records] == ["A1号", "B2号"]
    assert records[0]["zone"] == "一楼大厅" and records[1]["zone"] == "二楼"
    assert records[1]["tokens"] == ["chime", "B", "二", "号", "B", "二", "号"]
    for record, composed in zip(records, (first, second), strict=True):
        assert datetime.fromisoformat(record["start"]).tzinfo is not None
        assert record["duration"] == pytest.approx(composed.duration, abs=0.001)
        with open(record["wav"], "rb") as f:
            assert f.read() == composed.wav
    start1, start2 = (datetime.fromisoformat(r["start"]) for r in records)
    assert (start2 - start1).total_seconds() >= first.duration * 0.98
    assert errors == []


def _request(*rest: str):
    from hw_emulators.device import Request

    return Request({}, {}, tuple(rest))


def test_control_api_lists_and_serves_announcements(tmp_path) -> None:
    hall = EmulatedHall([{"id": "speaker-1", "kind": "speaker", "profile": "pc-speaker", "url": "emulated",
                          "options": {"zone": "大厅"}}])
    hall.start()
    try:
        host, port = hall.serve_control()
        listing = json.load(urllib.request.urlopen(f"http://{host}:{port}/devices", timeout=5))
        (entry,) = [d for d in listing if d["id"] == "speaker-1"]
        driver = open_speaker(entry["url"], [PROFILE])
        driver.open()
        composed = SHORT.compose("C3", None, 1)
        driver.play(composed.wav, {"text": composed.text, "tokens": composed.tokens})
        driver.close()
        base = f"http://{host}:{port}/speaker/speaker-1/announcements"
        records = json.load(urllib.request.urlopen(base, timeout=5))
        assert [(r["text"], r["zone"]) for r in records] == [("C3号", "大厅")]
        assert set(records[0]) >= {"text", "tokens", "zone", "start", "duration", "wav"}
        with urllib.request.urlopen(f"{base}/1.wav", timeout=5) as resp:
            assert resp.headers["Content-Type"] == "audio/wav"
            wav = resp.read()
        assert spoken_tokens(read_wav(wav).frames, PACK.clips) == ["chime", "C", "三", "号"]
        for bad in ("2.wav", "x.wav", "1.mp3"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}/{bad}", timeout=5)
            assert err.value.code == 400
        state = json.load(urllib.request.urlopen(f"http://{host}:{port}/state", timeout=5))
        (dev,) = [d for d in state["devices"] if d["id"] == "speaker-1"]
        assert dev["announcements"][0]["text"] == "C3号" and dev["played"] == 1
    finally:
        hall.stop()


def test_emulator_refuses_a_frame_that_is_not_a_wav() -> None:
    device = EmulatedSpeaker("speaker-1", PROFILE.name, PROFILE, TcpLink("speaker-1"))
    device.start()
    try:
        host, port = device.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(encode(PLAY, 9, {"text": "坏"}, b"RIFF garbage"))
            decoder, frames = AudioFrameDecoder(), []
            while not frames:
                frames = decoder.feed(sock.recv(4096))
        assert frames[0].type == ERROR and frames[0].seq == 9 and "WAV" in frames[0].meta["error"]
        assert device.refused == 1 and device.api_announcements(_request()) == []
    finally:
        device.stop()


def test_silent_speaker_times_out_and_a_pulled_cable_is_reported_once(emu: EmulatedSpeaker) -> None:
    errors: list[Exception] = []
    driver = open_speaker(emu.url, [PROFILE], on_error=errors.append)
    driver.open()
    composed = SHORT.compose("D4", None, 1, chime=False)
    try:
        emu.set_fault("silent")
        t0 = time.monotonic()
        with pytest.raises(TransportTimeout, match="未应答"):
            driver.play(composed.wav)
        assert time.monotonic() - t0 < 5
        emu.clear_fault()
        long = SHORT.compose("D5", None, 3)
        emu.set_fault("delay", 300)   # the DONE of a long play arrives late: still fine
        assert driver.play(composed.wav) == pytest.approx(composed.duration, abs=0.001)
        emu.clear_fault()
        if isinstance(emu.link, TcpLink):
            import threading

            threading.Timer(0.5, emu.set_fault, ("disconnect",)).start()
            with pytest.raises(TransportError):
                driver.play(long.wav)
            wait_until(lambda: len(errors) == 1, what="one error report")
            time.sleep(0.2)
            assert len(errors) == 1
    finally:
        driver.close()
        emu.clear_fault()


def test_null_audio_output_plays_in_real_time() -> None:
    driver = open_speaker("audio://null")
    driver.open()
    composed = SHORT.compose("E5", None, 1)
    try:
        t0 = time.perf_counter()
        assert driver.play(composed.wav) == pytest.approx(composed.duration, abs=0.001)
        elapsed = time.perf_counter() - t0
        assert driver.started_at is not None and driver.started_at - t0 < 0.1
        assert composed.duration * 0.95 <= elapsed <= composed.duration + 1.0
    finally:
        driver.close()


def _this_pc_has_a_sound_output() -> bool:
    """What miniaudio itself finds on this PC: a default playback device it can open."""
    import miniaudio

    try:
        miniaudio.PlaybackDevice(output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1,
                                 sample_rate=22050).close()
    except miniaudio.MiniaudioError:
        return False
    return True


def _check_default_output(sound_card: bool) -> None:
    """`audio://default`: without a sound card, open() says in Chinese what to use instead; with one,
    a call is played in real time (returns its length once it has been heard)."""
    driver = open_speaker("audio://default")
    try:
        if not sound_card:
            with pytest.raises(DeviceNotFound) as err:
                driver.open()
            assert "没有可用的音频输出设备" in str(err.value) and "wavdir://" in str(err.value)
            return
        driver.open()
        composed = SHORT.compose("F6", None, 1, chime=False)
        t0 = time.perf_counter()
        assert driver.play(composed.wav) == pytest.approx(composed.duration, abs=0.001)
        elapsed = time.perf_counter() - t0
        assert driver.started_at is not None and driver.started_at - t0 < 0.5
        assert composed.duration * 0.95 <= elapsed <= composed.duration + 2.0
    finally:
        driver.close()


def test_the_default_output_of_this_pc_plays_or_says_there_is_no_sound_card() -> None:
    _check_default_output(_this_pc_has_a_sound_output())


def test_without_a_sound_card_the_error_says_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this PC has: miniaudio failing to open any output, as it does with no sound card."""
    import miniaudio

    def no_output(*args: object, **kwargs: object) -> None:
        raise miniaudio.MiniaudioError("failed to init device", -401)

    monkeypatch.setattr(miniaudio, "PlaybackDevice", no_output)
    _check_default_output(sound_card=False)


def test_with_a_sound_card_a_call_is_played_in_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this PC has: the default output stood in for by miniaudio's null backend, which plays
    in real time to nowhere, so the played-it-all path is checked on a PC without a sound card too."""
    import miniaudio

    real = miniaudio.PlaybackDevice

    def null_output(*args: object, **kwargs: object) -> object:
        return real(*args, **{**kwargs, "backends": [miniaudio.Backend.NULL]})

    monkeypatch.setattr(miniaudio, "PlaybackDevice", null_output)
    _check_default_output(sound_card=True)


def test_an_output_that_is_not_there_is_named() -> None:
    missing = open_speaker("audio://no-such-output-xyz")
    with pytest.raises(DeviceNotFound, match="no-such-output-xyz"):
        missing.open()
