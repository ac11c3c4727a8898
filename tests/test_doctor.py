"""`hallctl doctor` on real halls: the daemon with its broker, emulated devices behind the emulator's
control API, the management-system emulator with a bearer token. A healthy hall passes every line;
each fault the emulators inject fails its own line while every other check still answers; a broker
that is down and a database held locked cost their own lines, within the time limit."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hall_controller.cli import main as hallctl
from hall_controller.clock import ManualClock, SystemClock
from hall_controller.operate import doctor as doc
from hall_controller.store import upgrade
from hw_emulators.mgmt import MgmtEmulator

from .harness import PIN, Hall, free_port, tablet, wait_until, window

TOKEN = "doctor-test-token-5f3a9c"
TIMEOUT = 2.0       # --timeout of the fault runs: a hung part costs this much
PROBE_S = 2.0       # the printers' idle status probe (the profile's 10 s is longer than a test should wait)


def doctor_json(config: Path, *extra: str, clock: Any = None) -> tuple[int, dict[str, dict[str, Any]], list[dict]]:
    """Run `hallctl doctor --json`; (exit code, lines by check, the raw list)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = hallctl(["--log-level", "ERROR", "doctor", "--config", str(config), "--json", *extra],
                       clock=clock or SystemClock())
    lines = json.loads(out.getvalue())
    return code, {line["check"]: line for line in lines}, lines


def failing(lines: list[dict]) -> set[str]:
    return {line["check"] for line in lines if line["status"] == "fail"}


def set_config(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


class DoctorHall:
    """The sample hall with every device emulated (found through the control API the config names),
    the management system with a bearer token, and every app client connected."""

    def __init__(self, tmp_path: Path, broker: str = "embedded") -> None:
        self.mgmt = MgmtEmulator(token=TOKEN).start()
        try:
            self.hall = Hall(tmp_path, mutate=self._prepare, devices="tcp", control=True, device_urls=False,
                             broker=broker)
        except BaseException:
            self.mgmt.stop()
            raise
        self.config = self.hall.config_path
        set_config(self.config, lambda d: d["emulator"].update(control=self.hall.control.removeprefix("http://")))
        self.wait_devices()
        self.apps = [c.id for c in self.hall.config.clients if c.role != "admin"]
        for client_id in self.apps:
            self.hall.client(client_id)

    def _prepare(self, data: dict[str, Any]) -> None:
        data["upstream"] = {"url": self.mgmt.url, "token": TOKEN}
        for device in data["devices"]:
            if device["kind"] == "printer":
                device.setdefault("options", {})["status_probe_s"] = PROBE_S

    def owners(self) -> list[str]:
        return [d.id for d in self.hall.config.devices if not d.bus and d.kind != "camera"]

    def wait_devices(self) -> None:
        wait_until(lambda: all(self.hall.online(d) for d in self.owners()), 15, "every device online")

    def fault(self, kind: str, device: str, mode: str, ms: int | None = None) -> None:
        status, _ = self.hall.post(f"/{kind}/{device}/fault", {"mode": mode, **({"ms": ms} if ms else {})})
        assert status == 200

    def clear(self, kind: str, device: str) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.hall.control}/{kind}/{device}/fault", method="DELETE")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def close(self) -> None:
        self.hall.close()
        self.mgmt.stop()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory):
    hall = DoctorHall(tmp_path_factory.mktemp("doctor"))
    yield hall
    hall.close()


# -- the healthy hall ------------------------------------------------------------------------------

def test_a_healthy_hall_passes_every_line(healthy: DoctorHall, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = hallctl(["--log-level", "ERROR", "doctor", "--config", str(healthy.config)])
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert code == 0, out
    checks = lines[:-1]
    assert all(line.startswith(("✔", "–")) for line in checks), out
    assert [line for line in checks if line.startswith("–")] == [line for line in checks if "camera-1" in line]
    for device in healthy.owners():
        assert any(f" {device} /" in line and line.startswith("✔") for line in checks), device
    for word in ("数据库 / database", "迁移为最新", "MQTT 服务 / broker", "守护进程 / daemon", "上级系统令牌", "大厅时钟",
                 "语音包", "音频输出", "应用客户端 / app clients: 21 个全部在线", "上报发件箱", "磁盘空间"):
        assert word in out, word
    assert lines[-1].startswith("全部通过")
    assert elapsed < 5, elapsed
    # nothing secret on the screen: the token, the admin's or any client's MQTT password
    assert TOKEN not in out
    assert not any(pw in out for pw in healthy.hall.passwords.values())


def test_json_lists_every_check_with_both_languages(healthy: DoctorHall) -> None:
    code, by_check, lines = doctor_json(healthy.config)
    assert code == 0
    assert all(set(line) == {"check", "ok", "status", "zh", "en", "detail"} for line in lines)
    assert all(line["ok"] for line in lines)
    assert {"config", "database", "disk", "outbox", "broker", "daemon", "upstream", "upstream_token", "clock",
            "voice", "audio", "clients", "device:printer-1", "device:bus-1"} <= set(by_check)
    assert by_check["daemon"]["detail"]["version"]
    assert by_check["database"]["detail"]["revision"] == by_check["database"]["detail"]["head"]
    assert TOKEN not in json.dumps(lines, ensure_ascii=False)


# -- device faults through the emulator control API -------------------------------------------------

def test_an_unplugged_printer_fails_its_line_with_what_it_expects(healthy: DoctorHall) -> None:
    healthy.fault("printer", "printer-1", "disconnect")
    try:
        # No ticket: the idle printer's status probe finds it unplugged within the probe interval.
        wait_until(lambda: not healthy.hall.online("printer-1"), PROBE_S + 3.5, "printer-1 offline")
        assert not healthy.hall.of_type("ticket_issued")
        code, by_check, lines = doctor_json(healthy.config, "--timeout", str(TIMEOUT))
        assert code == 1
        assert failing(lines) == {"device:printer-1"}
        line = by_check["device:printer-1"]["zh"]
        assert "离线" in line and "期望 模拟设备" in line and "故障 disconnect" in line and "→" in line
        assert "DELETE /printer/printer-1/fault" in line
    finally:
        healthy.clear("printer", "printer-1")
        healthy.wait_devices()


@pytest.mark.slow
@pytest.mark.parametrize("mode, ms", [("disconnect", None), ("silent", None), ("corrupt", None), ("delay", 3000)])
def test_each_device_fault_fails_the_card_readers_line_only(tmp_path: Path, mode: str, ms: int | None) -> None:
    """A hall of its own per mode: a reader that answers too late goes offline once and stays so (it
    is not counted up on a late reply only to time out again), as a silent one does."""
    hall = DoctorHall(tmp_path)
    try:
        hall.fault("card-reader", "card-reader-2", mode, ms)
        wait_until(lambda: hall.hall.device_events("device_offline", "card-reader-2"), 20,
                   f"card-reader-2 offline ({mode})")
        code, by_check, lines = doctor_json(hall.config, "--timeout", str(TIMEOUT))
        assert code == 1
        assert failing(lines) == {"device:card-reader-2"}, [by_check[c]["zh"] for c in failing(lines)]
        line = by_check["device:card-reader-2"]["zh"]
        assert f"故障 {mode}" in line, line
        assert len(hall.hall.device_events("device_offline", "card-reader-2")) == 1     # and no flapping
    finally:
        hall.close()


def test_an_unplugged_bus_names_the_screens_and_keypads_behind_it(healthy: DoctorHall) -> None:
    healthy.fault("controller", "bus-1", "disconnect")
    try:
        wait_until(lambda: not healthy.hall.online("bus-1"), 10, "bus-1 offline")
        code, by_check, lines = doctor_json(healthy.config, "--timeout", str(TIMEOUT))
        assert code == 1 and failing(lines) == {"device:bus-1"}
        assert "窗口屏 8 台，呼叫器 8 台同样离线" in by_check["device:bus-1"]["zh"]
    finally:
        healthy.clear("controller", "bus-1")
        healthy.wait_devices()


# -- the management system ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode, ms, failed, words", [
    ("5xx", None, {"upstream"}, "HTTP 503"),
    ("4xx", None, {"upstream"}, "HTTP 422"),
    ("401", None, {"upstream_token"}, "HTTP 401"),
    ("403", None, {"upstream_token"}, "HTTP 403"),
    ("reset", None, {"upstream"}, "无法连接"),
    ("hang", None, {"upstream"}, "无法连接"),
    ("slow", 4000, {"upstream"}, "无法连接"),
])
def test_each_upstream_fault_fails_its_line_and_the_rest_answer(healthy: DoctorHall, mode: str, ms: int | None,
                                                                 failed: set[str], words: str) -> None:
    healthy.mgmt.set_fault(mode, ms)
    try:
        started = time.monotonic()
        code, by_check, lines = doctor_json(healthy.config, "--timeout", str(TIMEOUT))
        elapsed = time.monotonic() - started
    finally:
        healthy.mgmt.clear_fault()
    assert code == 1
    assert failing(lines) == failed, {c: by_check[c]["zh"] for c in failing(lines)}
    assert words in by_check[next(iter(failed))]["zh"]
    assert by_check["broker"]["ok"] and by_check["daemon"]["ok"] and by_check["database"]["ok"]
    assert elapsed < TIMEOUT + 3, elapsed


def test_a_slow_upstream_is_a_warning(healthy: DoctorHall) -> None:
    healthy.mgmt.set_fault("slow", 2300)
    try:
        code, by_check, _ = doctor_json(healthy.config, "--timeout", "5")
    finally:
        healthy.mgmt.clear_fault()
    assert code == 0
    assert by_check["upstream"]["status"] == "warn" and "应答慢" in by_check["upstream"]["zh"]


def test_a_refused_token_and_a_dead_letter(tmp_path: Path) -> None:
    """The management system takes another token than the hall's: the token line fails; a record it
    refuses for good (4xx) is a dead letter in the outbox line."""
    hall = DoctorHall(tmp_path)
    try:
        hall.mgmt.set_fault("4xx")
        actor = window(3)
        hall.hall.run(actor, "login", staff_id="S003", pin=PIN)
        hall.hall.issue()
        hall.hall.run(actor, "call_next")
        hall.hall.run(actor, "start")
        ticket = hall.hall.run(actor, "finish")["ticket"]
        hall.hall.run(tablet(3), "rate", ticket=ticket["id"], score=5)    # the visit closes: its record is sent
        wait_until(lambda: doctor_json(hall.config)[1]["outbox"]["status"] == "fail", 20, "the record dead")
        hall.mgmt.clear_fault()
        hall.mgmt.token = "another-token"
        code, by_check, lines = doctor_json(hall.config, "--timeout", str(TIMEOUT))
        assert code == 1
        assert failing(lines) == {"upstream_token", "outbox"}
        assert "被拒绝（HTTP 401）" in by_check["upstream_token"]["zh"]
        assert "1 条上报失败" in by_check["outbox"]["zh"] and "--retry-all" in by_check["outbox"]["zh"]
        assert by_check["upstream"]["ok"]
    finally:
        hall.close()


@pytest.mark.parametrize("skew, status", [(timedelta(seconds=5), "ok"), (timedelta(minutes=2), "warn"),
                                          (timedelta(minutes=-10), "fail")])
def test_the_hall_clock_against_the_upstreams_date(healthy: DoctorHall, skew: timedelta, status: str) -> None:
    clock = ManualClock(datetime.now(UTC) + skew)
    # the skew is judged here, not speed: a loaded machine gets room before the upstream counts as silent
    _, by_check, _ = doctor_json(healthy.config, "--timeout", "15", clock=clock)
    line = by_check["clock"]
    assert line["status"] == status, (line, by_check["upstream"])
    assert abs(line["detail"]["offset_seconds"] - skew.total_seconds()) < 3
    if status == "fail":
        assert "慢 600 秒" in line["zh"] or "慢 599 秒" in line["zh"] or "慢 601 秒" in line["zh"]


def test_an_app_client_gone_fails_the_clients_line(healthy: DoctorHall) -> None:
    client = next(c for c in healthy.hall.clients if c.client_id == "kiosk-2")
    client.close()
    try:
        code, by_check, lines = doctor_json(healthy.config)
        assert code == 1 and failing(lines) == {"clients"}
        assert "20/21 在线" in by_check["clients"]["zh"] and "离线：kiosk-2" in by_check["clients"]["zh"]
    finally:
        healthy.hall.clients.remove(client)
        healthy.hall.client("kiosk-2")


# -- the database ------------------------------------------------------------------------------------

def test_a_locked_database_fails_its_line_and_the_rest_answer_in_time(healthy: DoctorHall) -> None:
    db = healthy.hall.config.database.removeprefix("sqlite:///")
    holder = sqlite3.connect(db, timeout=0.1, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        code, by_check, lines = doctor_json(healthy.config, "--timeout", str(TIMEOUT))
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1
    assert "database" in failing(lines) and "锁定" in by_check["database"]["zh"]
    for check in ("config", "disk", "broker", "upstream", "upstream_token", "clock", "voice", "clients"):
        assert by_check[check]["ok"], by_check[check]
    assert elapsed < TIMEOUT + 3, elapsed


def test_migrations_behind_and_a_missing_database(healthy: DoctorHall, tmp_path: Path) -> None:
    old = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(old, "0002")
    _, by_check, _ = doctor_json(healthy.config, "--db", old)
    assert by_check["database"]["status"] == "fail"
    assert "迁移不是最新（0002" in by_check["database"]["zh"] and "hallctl db upgrade" in by_check["database"]["zh"]
    _, by_check, _ = doctor_json(healthy.config, "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert "不存在" in by_check["database"]["zh"] and "hallctl init" in by_check["database"]["zh"]


def test_disk_space_thresholds(tmp_path: Path) -> None:
    class Usage:
        def __init__(self, free: int) -> None:
            self.free = free

    ctx = doc.Context(config=_config(tmp_path), raw={}, base_dir=tmp_path,
                      clock=SystemClock(), timeout=1, db_url=f"sqlite:///{tmp_path / 'hall.db'}", mqtt_url=None,
                      mosquitto_dir=None)
    verdicts = {free: doc.check_disk(ctx, lambda _path, free=free: Usage(free))[0].status
                for free in (5 << 30, 900 << 20, 100 << 20)}
    assert verdicts == {5 << 30: "ok", 900 << 20: "warn", 100 << 20: "fail"}


def _config(tmp_path: Path) -> Any:
    from hall_controller.config import load_config

    from .harness import init_hall
    return load_config(init_hall(tmp_path))


# -- the broker --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_mosquitto_down_and_its_acl_out_of_date(tmp_path: Path) -> None:
    hall = DoctorHall(tmp_path, broker="mosquitto")
    mosquitto_dir = tmp_path / "mosquitto"
    try:
        code, by_check, lines = doctor_json(hall.config, "--mosquitto-dir", str(mosquitto_dir))
        assert code == 0, {c: by_check[c]["zh"] for c in failing(lines)}
        assert by_check["mosquitto"]["status"] == "ok"

        assert hallctl(["--log-level", "ERROR", "client", "add", "kiosk-9", "--role", "kiosk",
                        "--config", str(hall.config)]) == 0
        _, by_check, lines = doctor_json(hall.config, "--mosquitto-dir", str(mosquitto_dir))
        assert by_check["mosquitto"]["status"] == "fail" and "hallctl mqtt-config" in by_check["mosquitto"]["zh"]
        assert "从未连接：kiosk-9" in by_check["clients"]["zh"]

        assert hall.hall.mosquitto is not None
        hall.hall.mosquitto.stop()
        started = time.monotonic()
        code, by_check, lines = doctor_json(hall.config, "--timeout", str(TIMEOUT), "--mosquitto-dir",
                                            str(mosquitto_dir))
        elapsed = time.monotonic() - started
        assert code == 1
        assert {"broker", "daemon", "devices", "clients"} <= failing(lines)
        assert "连接被拒绝" in by_check["broker"]["zh"] and "systemctl start mosquitto" in by_check["broker"]["zh"]
        for check in ("config", "database", "disk", "outbox", "upstream", "upstream_token", "clock", "voice"):
            assert by_check[check]["ok"], by_check[check]
        assert elapsed < TIMEOUT + 3, elapsed
    finally:
        hall.close()


def test_no_daemon_at_the_configured_address(tmp_path: Path) -> None:
    """No daemon ever ran: the runtime file is absent and nothing listens at mqtt.listen."""
    from .harness import init_hall

    port = free_port()
    config = init_hall(tmp_path, lambda d: d["mqtt"].update(listen=f"127.0.0.1:{port}"))
    code, by_check, lines = doctor_json(config, "--timeout", str(TIMEOUT))
    assert code == 1
    assert {"broker", "daemon", "devices", "clients"} <= failing(lines)
    assert by_check["upstream"]["status"] == "warn"       # the sample names no management system
    assert by_check["database"]["ok"] and by_check["voice"]["ok"]


# -- the config and the voice pack --------------------------------------------------------------------

def test_a_broken_voice_pack_fails_config_and_voice_and_the_rest_still_run(healthy: DoctorHall,
                                                                            tmp_path: Path) -> None:
    import shutil

    from hall_controller.voice.pack import builtin_pack_dir

    pack = tmp_path / "pack"
    shutil.copytree(builtin_pack_dir(), pack)
    (pack / "chime.wav").unlink()
    config = tmp_path / "hall.yaml"
    data = yaml.safe_load(healthy.config.read_text(encoding="utf-8"))
    data["voice"] = {"pack": str(pack)}
    for key in ("credentials", "secret_file"):
        data[key] = str(healthy.config.parent / (data.get(key) or {"credentials": "credentials.yaml",
                                                                      "secret_file": "hall.secret"}[key]))
    data["database"] = healthy.hall.config.database
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, by_check, lines = doctor_json(config, "--timeout", str(TIMEOUT))
    assert code == 1
    assert by_check["voice"]["status"] == "fail" and "chime.wav" in by_check["voice"]["zh"]
    assert any(line["check"] == "config" and line["status"] == "fail" and "voice" in line["zh"] for line in lines)
    assert by_check["database"]["ok"] and by_check["upstream"]["ok"] and by_check["broker"]["ok"]


def test_an_unreadable_config_says_so(tmp_path: Path) -> None:
    code, by_check, _ = doctor_json(tmp_path / "missing.yaml")
    assert code == 1 and "无法读取" in by_check["config"]["zh"] and "hallctl init" in by_check["config"]["zh"]


def test_an_offline_device_names_what_it_expects_beside_what_is_present(tmp_path: Path) -> None:
    """Real hardware: the url and the profile say what is expected; `devices scan`'s listing what is there."""
    from hall_controller.config import DeviceConfig
    from hall_controller.operate import devices_scan as ds

    config = _config(tmp_path)
    listing = ds.Listing([ds.SerialPort("/dev/ttyUSB0", vid=0x067B, pid=0x2303)],
                         [ds.UsbDevice(0x1A86, 0x7523, product="USB Serial")], "sysfs")
    printer = DeviceConfig("printer-1", "printer", "dory-dl6009-printer", "usb://0416:5011", kiosk="kiosk-1")
    text = doc.expected_text(printer, config, listing, 0.5)
    assert "期望 usb://0416:5011" in text and "未找到该 USB 设备" in text and "/dev/ttyUSB0（067b:2303）" in text
    assert "lp 组" in doc.expected_text(printer, config, ds.Listing([], [ds.UsbDevice(0x0416, 0x5011)], "sysfs"), 0.5)
    reader = DeviceConfig("card-reader-1", "card_reader", "generic-gat467-usb", "/dev/ttyUSB7", kiosk="kiosk-1")
    text = doc.expected_text(reader, config, listing, 0.5)
    assert "端口不存在" in text and "1a86:7523" in text       # and the USB-serial chips this model is built with
    tcp = DeviceConfig("printer-2", "printer", "dory-dl6009-printer", f"socket://127.0.0.1:{free_port()}")
    assert "TCP 连接被拒绝" in doc.expected_text(tcp, config, listing, 0.5)
