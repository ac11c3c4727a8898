"""The staff roster without editing YAML (issue 18, item 7): `hallctl staff list|add|edit|disable|enable|
set-pin|import`.

The roster lives in the hall database over the config's `staff:`; each change goes to the running daemon
as an admin op and applies at once (a clerk added logs in over MQTT the next moment, a clerk disabled
while logged in is logged out and the window terminal goes back to its login page), or with no daemon
to the database, which the next daemon start serves. PINs come from a hidden prompt or stdin, never
argv; only their hash travels and it is never logged or published. An import is checked whole: a bad
row means nothing applied, with the row and the field named.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PySide6.QtCore import Qt

from hall_controller.bus.client import CommandError, HallClient
from hall_controller.cli import main as hallctl
from hall_controller.clock import ManualClock, SystemClock
from hall_controller.config import Staff, load_config, verify_pin
from hall_controller.devices.screens import DEFAULT_IDLE_TEXT, KEYPAD_CLOSED, PAUSED_TEXT, keypad_error_code
from hall_controller.operate.staff import _width, decode_csv, parse_windows, read_roster_csv, roster_table
from hall_controller.store.roster import RosterInvalid, effective, plan
from window_terminal.app import WINDOW_EVENTS
from window_terminal.terminal import WindowTerminal

from .harness import MONDAY, PIN, DaemonProcess, Hall, device_hall, no_devices, wait_until

NEW_PIN = "73915286"        # 8 digits: not found by chance in timestamps, ports or hex ids
OTHER_PIN = "58204617"
HEADER_ZH = "工号,姓名,岗位,窗口,密码"


@pytest.fixture
def hall(tmp_path: Path):
    hall = Hall(tmp_path, mutate=no_devices, clock=ManualClock(MONDAY))
    yield hall
    hall.close()


def staff_cmd(hall: Hall, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    """`hallctl staff …` in this process on the hall's clock; `stdin` is what --pin-stdin reads."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return hallctl(["--log-level", "DEBUG", "staff", *args, "--config", str(hall.config_path)], clock=hall.clock)


def refusal(client: HallClient, staff_id: str, pin: str) -> str:
    with pytest.raises(CommandError) as info:
        client.request("login", staff_id=staff_id, pin=pin)
    assert info.value.code == "forbidden"
    return info.value.message


def staff_rows(hall: Hall) -> list[dict[str, Any]]:
    assert hall.store is not None
    with hall.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM staff ORDER BY id")).mappings()]


def roster(hall: Hall, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    capsys.readouterr()
    assert staff_cmd(hall, monkeypatch, "list", "--json") == 0
    return {e["job_number"]: e for e in json.loads(capsys.readouterr().out)["staff"]}


# ---------------------------------------------------------------------------------------- on the daemon

def test_a_clerk_added_logs_in_at_once_and_a_new_pin_replaces_the_old(hall, monkeypatch, capsys):
    w1 = hall.client("window-1")
    assert staff_cmd(hall, monkeypatch, "add", "1009", "张敏", "法律咨询岗", "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    out = capsys.readouterr().out
    assert "已新增 S1009 张敏" in out and "已生效（守护进程" in out, out

    assert w1.request("login", staff_id="1009", pin=NEW_PIN)["window"]["staff"] == {
        "id": "S1009", "name": "张敏", "position": "法律咨询岗", "job_number": "1009"}
    w1.request("logout")
    added = hall.of_type("staff_changed")[-1]
    assert added["staff"] == {"id": "S1009", "job_number": "1009"} and added["action"] == "added"
    assert set(added["fields"]) == {"job_number", "name", "position", "pin"}

    # set-pin on a clerk of the YAML: the old PIN is refused from now on, the new one accepted
    assert staff_cmd(hall, monkeypatch, "set-pin", "1002", "--pin-stdin", stdin=OTHER_PIN + "\n") == 0
    assert "旧密码不再有效" in capsys.readouterr().out
    assert refusal(w1, "1002", PIN) == "工号或密码错误"
    assert w1.request("login", staff_id="1002", pin=OTHER_PIN)["window"]["staff"]["id"] == "S002"
    changed = hall.of_type("staff_changed")[-1]
    assert changed["staff"]["id"] == "S002" and changed["fields"] == ["pin"]
    rows = {r["id"]: r for r in staff_rows(hall)}
    assert rows["S002"]["name"] is None and rows["S002"]["active"] is None   # only the PIN is laid over the YAML
    assert verify_pin(OTHER_PIN, rows["S002"]["pin_hash"])

    listed = roster(hall, monkeypatch, capsys)
    assert listed["1002"]["source"] == "config+database" and listed["1002"]["logged_in_at"] == 1
    assert listed["1009"]["source"] == "database" and listed["1003"]["source"] == "config"
    assert all("pin_hash" not in e for e in listed.values())


def test_a_clerk_disabled_while_logged_in_is_logged_out_and_refused(hall, monkeypatch, capsys):
    w3 = hall.client("window-3")
    observer = hall.client("window-5", events=["staff_logout"])     # a window app's events, not its own window
    w3.request("login", staff_id="1003", pin=PIN)
    w3.request("call_next")    # nothing waits: the window is idle, logged in

    assert staff_cmd(hall, monkeypatch, "disable", "1003") == 0
    out = capsys.readouterr().out
    assert "已停用 S003 张伟" in out and "3号窗口的登录已退出" in out, out
    logout = observer.wait_for_event(lambda e: e["type"] == "staff_logout" and e["window"] == 3)
    assert logout["staff"] == {"id": "S003"} and logout["reason"] == "disabled"
    wait_until(lambda: w3.state.windows.get(3, {}).get("staff") is None, 5, "window 3's retained state logged out")
    assert "已停用" in refusal(w3, "1003", PIN)
    assert roster(hall, monkeypatch, capsys)["1003"]["active"] is False

    assert staff_cmd(hall, monkeypatch, "disable", "S003") == 0          # by id too; nothing to change
    assert "已是停用状态" in capsys.readouterr().out
    assert staff_cmd(hall, monkeypatch, "enable", "1003") == 0
    assert w3.request("login", staff_id="1003", pin=PIN)["window"]["status"] == "idle"
    kinds = [(e["type"], e.get("fields")) for e in hall.events if e["type"] in ("staff_changed", "staff_logout")]
    assert kinds == [("staff_changed", ["active"]), ("staff_logout", None), ("staff_changed", ["active"])]


def test_the_windows_a_clerk_may_log_in_at(hall, monkeypatch, capsys):
    w1, w3 = hall.client("window-1"), hall.client("window-3")
    assert staff_cmd(hall, monkeypatch, "add", "1009", "张敏", "法律咨询岗", "--windows", "1、2",
                     "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    assert refusal(w3, "1009", NEW_PIN) == "张敏不能在3号窗口登录（可登录窗口：1号、2号）"
    w1.request("login", staff_id="1009", pin=NEW_PIN)

    # moved to window 3 only while logged in at window 1: logged out there, may log in at 3
    assert staff_cmd(hall, monkeypatch, "edit", "1009", "--windows", "3") == 0
    assert "1号窗口的登录已退出" in capsys.readouterr().out
    logout = hall.of_type("staff_logout")[-1]
    assert logout["window"] == 1 and logout["reason"] == "window_not_allowed"
    assert w3.request("login", staff_id="1009", pin=NEW_PIN)["window"]["staff"]["id"] == "S1009"
    assert roster(hall, monkeypatch, capsys)["1009"]["windows"] == [3]

    # a YAML clerk restricted, then any window again: the row keeps nothing the YAML says already
    assert staff_cmd(hall, monkeypatch, "edit", "1001", "--windows", "2") == 0
    assert refusal(w1, "1001", PIN).startswith("王芳不能在1号窗口登录")
    assert staff_cmd(hall, monkeypatch, "edit", "1001", "--windows", "全部") == 0
    w1.request("login", staff_id="1001", pin=PIN)
    assert {r["id"]: r["windows"] for r in staff_rows(hall)}["S001"] is None


def csv_bytes(text: str, encoding: str) -> bytes:
    return text.encode(encoding)


def test_import_utf8_with_bom_and_gbk_from_excel(hall, monkeypatch, capsys, tmp_path):
    utf8 = tmp_path / "名册-utf8.csv"
    utf8.write_bytes(csv_bytes(f"\ufeff{HEADER_ZH}\r\n1010,赵六,公证岗,5;6,{NEW_PIN}\r\n1002,李强,法律援助岗,,\r\n"
                               f"1003,张伟,法律咨询岗,,\r\n", "utf-8"))
    assert staff_cmd(hall, monkeypatch, "import", str(utf8)) == 0
    out = capsys.readouterr().out
    assert "UTF-8（带 BOM）" in out and "新增 1 人，更新 1 人，无变化 1 人" in out, out
    assert "第2行未填编号，新人员编号为 S1010" in out and "第3行未填编号，按工号 1002 对应已有人员 S002" in out, out
    assert "更新 S002（工号 1002，李强）：岗位" in out and "第4行" not in out, out
    w5 = hall.client("window-5")
    assert w5.request("login", staff_id="1010", pin=NEW_PIN)["window"]["staff"]["position"] == "公证岗"
    assert refusal(hall.client("window-1"), "1010", NEW_PIN).startswith("赵六不能在1号窗口登录")

    gbk = tmp_path / "名册-gbk.csv"      # Excel's "CSV" on a Chinese Windows; English headers, ids given
    gbk.write_bytes(csv_bytes(f"id,job_number,name,position,windows,pin\r\nS020,1020,孙八,人民调解岗,7、8,{OTHER_PIN}\r\n",
                              "gbk"))
    assert staff_cmd(hall, monkeypatch, "import", str(gbk)) == 0
    assert "GBK/GB18030" in capsys.readouterr().out
    assert hall.client("window-7").request("login", staff_id="S020", pin=OTHER_PIN)["window"]["staff"]["name"] == "孙八"
    listed = roster(hall, monkeypatch, capsys)
    assert (listed["1020"]["windows"], listed["1002"]["position"]) == ([7, 8], "法律援助岗")

    assert staff_cmd(hall, monkeypatch, "import", str(utf8)) == 0     # the same file again changes nothing
    assert "新增 0 人，更新 1 人，无变化 2 人" in capsys.readouterr().out    # (a PIN given is set again)


def test_an_import_with_a_bad_row_applies_nothing_and_names_row_and_field(hall, monkeypatch, capsys, tmp_path):
    before = roster(hall, monkeypatch, capsys)
    events_before = len(hall.events)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(f"{HEADER_ZH}\n1010,赵六,公证岗,5,{NEW_PIN}\n1011,钱七,律师岗,9,12\n1012,,公证岗,x,\n",
                              "gb18030"))
    assert staff_cmd(hall, monkeypatch, "import", str(bad)) == 1
    err = capsys.readouterr().err
    for line in ("第3行 岗位（position）：未知岗位「律师岗」", "第3行 窗口（windows）：没有9号窗口",
                 "第3行 密码（PIN）：须为 4–8 位数字", "第4行 姓名（name）：不能为空", "第4行 窗口（windows）：「x」无法识别",
                 "row 3, position: unknown position", "名册未作任何修改"):
        assert line in err, err
    assert "第2行" not in err

    # what only the roster in force can tell (a job number owned by another clerk) is refused by the daemon
    taken = tmp_path / "taken.csv"
    taken.write_text("编号,工号,姓名,岗位\nS030,1030,周九,公证岗\nS031,1001,吴十,公证岗\n", encoding="utf-8")
    assert staff_cmd(hall, monkeypatch, "import", str(taken)) == 1
    err = capsys.readouterr().err
    assert "第3行 工号（job number）：「1001」已是 S001（王芳，工号 1001）的登录名" in err, err
    assert "第2行" not in err and "名册未作任何修改" in err

    assert roster(hall, monkeypatch, capsys) == before and staff_rows(hall) == []
    assert not [e for e in hall.events[events_before:] if e["type"].startswith("staff_")]


def test_no_daemon_the_change_goes_to_the_database_and_the_next_start_serves_it(hall, monkeypatch, capsys):
    hall.stop_daemon()          # its runtime file goes with it: hallctl falls back to the database
    assert staff_cmd(hall, monkeypatch, "add", "1009", "张敏", "公证岗", "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    assert staff_cmd(hall, monkeypatch, "disable", "1004") == 0
    captured = capsys.readouterr()
    assert "改为直接修改数据库" in captured.err and "守护进程下次启动时生效" in captured.out
    listed = roster(hall, monkeypatch, capsys)
    assert listed["1009"]["source"] == "database" and listed["1004"]["active"] is False

    hall.restart()
    w2 = hall.client("window-2")
    assert w2.request("login", staff_id="1009", pin=NEW_PIN)["window"]["staff"]["id"] == "S1009"
    assert "已停用" in refusal(hall.client("window-4"), "1004", PIN)
    stored = [e for e in hall.store.iter_events() if e["type"] == "staff_changed"]
    assert [(e["staff"]["id"], e["action"]) for e in stored] == [("S1009", "added"), ("S004", "updated")]


def test_pins_never_reach_a_log_an_event_or_a_reply(hall, monkeypatch, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    book = tmp_path / "book.csv"
    book.write_text(f"{HEADER_ZH}\n1011,钱七,公证岗,,{OTHER_PIN}\n", encoding="utf-8")
    assert staff_cmd(hall, monkeypatch, "add", "1009", "张敏", "公证岗", "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    assert staff_cmd(hall, monkeypatch, "set-pin", "1001", "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    assert staff_cmd(hall, monkeypatch, "import", str(book)) == 0
    hall.client("window-1").request("login", staff_id="1009", pin=NEW_PIN)
    hashes = [r["pin_hash"] for r in staff_rows(hall)]
    assert len(hashes) == 3 and all(h.startswith("pbkdf2_sha256$") for h in hashes)
    secrets = [NEW_PIN, OTHER_PIN, *hashes, *(h.rsplit("$", 1)[1] for h in hashes)]
    assert "staff roster: S1009 added" in caplog.text        # the daemon's line was captured
    seen = {"log": caplog.text, "output": "".join(capsys.readouterr()),
            "events": json.dumps(list(hall.store.iter_events()), ensure_ascii=False)}
    with hall.store.engine.connect() as conn:     # replies the daemon keeps for redelivered commands
        seen["replies"] = " ".join(conn.execute(sa.text("SELECT reply FROM commands")).scalars())
    for where, text in seen.items():
        for secret in secrets:
            assert secret not in text, (where, secret[:12])


def test_a_pin_is_never_a_command_line_argument(tmp_path, monkeypatch, capsys):
    """`ps` shows every process's argv: no staff command takes a PIN there."""
    for argv in (["staff", "add", "1009", "张敏", "公证岗", "--pin", NEW_PIN], ["staff", "add", "1009", "张敏", "公证岗",
                 NEW_PIN], ["staff", "set-pin", "1001", NEW_PIN], ["staff", "set-pin", "1001", "--pin", NEW_PIN]):
        with pytest.raises(SystemExit) as info:
            hallctl(argv)
        assert info.value.code == 2, argv

    # the real command in its own process: the PIN on stdin, its argv as `ps` shows it, no daemon
    hall = Hall(tmp_path, mutate=no_devices, daemon=False)
    try:
        cmd = [sys.executable, "-m", "hall_controller.cli", "staff", "set-pin", "1001", "--pin-stdin",
               "--config", str(hall.config_path)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        argv = wait_until(lambda: b"set-pin" in cmdline.read_bytes() and cmdline.read_bytes(), 30,
                          "the command's argv after exec")     # what `ps` shows while it waits for the PIN
        out, err = proc.communicate(NEW_PIN + "\n", timeout=60)
    finally:
        hall.close()
    assert proc.returncode == 0, err
    assert NEW_PIN.encode() not in argv
    assert NEW_PIN not in out + err and "旧密码不再有效" in out
    config = load_config(hall.config_path)
    row = sa.create_engine(config.database).connect().execute(sa.text("SELECT pin_hash FROM staff")).scalar_one()
    assert verify_pin(NEW_PIN, row)


def test_the_window_terminal_goes_back_to_login_when_its_clerk_is_disabled(qtbot, hall_daemon: DaemonProcess, ui_bus,
                                                                           monkeypatch, capsys):
    bus = ui_bus("window-3", role="window", events=WINDOW_EVENTS)
    widget = WindowTerminal(bus, 3, clock=SystemClock())
    qtbot.addWidget(widget)
    widget.show()
    qtbot.keyClicks(widget.job_edit, "1003")
    qtbot.keyClicks(widget.pin_edit, PIN)
    qtbot.keyClick(widget.pin_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: widget.state.logged_in and widget.pages.currentIndex() == 1, timeout=10_000)
    # hallctl reaches the daemon process through the runtime file it wrote
    assert hallctl(["staff", "disable", "1003", "--config", str(hall_daemon.config)]) == 0
    assert "3号窗口的登录已退出" in capsys.readouterr().out
    qtbot.waitUntil(lambda: not widget.state.logged_in and widget.pages.currentIndex() == 0, timeout=10_000)


def test_the_window_screens_follow_a_clerk_disabled_at_the_keypad(tmp_path, monkeypatch, capsys):
    """Logged in with the window keypad (job number, no PIN): disabled, the LED and keypad show the
    window closed, and the keypad's login is refused too."""
    hall = device_hall(tmp_path)
    try:
        hall.wait_online()
        hall.press(3, "function", "1003")
        hall.wait_led(3, DEFAULT_IDLE_TEXT)
        assert staff_cmd(hall, monkeypatch, "disable", "1003") == 0
        hall.wait_led(3, PAUSED_TEXT)            # closed: nobody logged in
        hall.wait_keypad(3, KEYPAD_CLOSED)
        hall.press(3, "function", "1003")
        hall.wait_keypad(3, keypad_error_code("forbidden"))
        assert hall.service.snapshot()["windows"]["3"]["staff"] is None
    finally:
        hall.close()


# ---------------------------------------------------------------------------------------- the parts

def test_windows_cells_as_people_write_them():
    assert parse_windows("1;2;3") == parse_windows("1、2、3") == parse_windows("1，2，3") == [1, 2, 3]
    assert parse_windows("1-3") == parse_windows("1号、2号、3号窗口") == [1, 2, 3]
    assert parse_windows("") == parse_windows("全部") == []
    for bad in ("x", "1..2", "3-1"):
        with pytest.raises(ValueError):
            parse_windows(bad)


def test_encodings_are_told_apart():
    text = "工号,姓名,岗位\n1001,王芳,综合接待岗\n"
    assert decode_csv(b"\xef\xbb\xbf" + text.encode()) == (text, "UTF-8（带 BOM）")
    assert decode_csv(text.encode()) == (text, "UTF-8")
    assert decode_csv(text.encode("gbk")) == (text, "GBK/GB18030")
    assert decode_csv(text.encode("utf-16")) == (text, "UTF-16")
    found = read_roster_csv(text.replace(",", "\t").encode("utf-16"), [1, 2])
    assert found.entries == [{"row": 2, "job_number": "1001", "name": "王芳", "position": "综合接待岗"}]


def test_a_row_keeps_only_what_differs_from_the_yaml_so_later_yaml_edits_show():
    base = [Staff("S001", "1001", "王芳", "综合接待岗", "h1"), Staff("S002", "1002", "李强", "法律咨询岗", "h2")]
    change = plan(base, {}, [{"id": "S001", "name": "王芳", "position": "公证岗", "active": False}], [1, 2],
                  now="2026-12-07T09:00:00+08:00")
    row = change.rows["S001"]
    assert (row["name"], row["position"], row["active"]) == (None, "公证岗", False)
    assert change.changes == [{"id": "S001", "job_number": "1001", "action": "updated", "fields": ["position", "active"]}]
    renamed = [Staff("S001", "1001", "王芳芳", "综合接待岗", "h1"), base[1]]      # the YAML edited later
    assert [m.name for m, _ in effective(renamed, change.rows)] == ["王芳芳", "李强"]
    with pytest.raises(RosterInvalid) as info:
        plan(base, change.rows, [{"job_number": "1003", "name": "新人", "position": "公证岗"},
                                 {"id": "S009", "job_number": "1003", "name": "又一人", "position": "公证岗"}], [1, 2],
             now="2026-12-07T09:00:00+08:00")
    assert "第2条 工号（job number）：「1003」已是 S1003（新人，工号 1003）的登录名" in str(info.value)


def test_the_list_is_a_chinese_table():
    entries = [{"id": "S001", "job_number": "1001", "name": "王芳", "position": "综合接待岗", "windows": [],
                "active": True, "has_pin": True, "source": "config", "logged_in_at": 1},
               {"id": "S1009", "job_number": "1009", "name": "张敏", "position": "公证岗", "windows": [5, 6],
                "active": False, "has_pin": True, "source": "database", "logged_in_at": None}]
    lines = roster_table(entries).splitlines()
    assert lines[0].split() == ["工号", "姓名", "岗位", "窗口", "状态", "来源", "编号"]
    assert lines[1].split() == ["1001", "王芳", "综合接待岗", "全部", "在用（1号窗口已登录）", "config", "S001"]
    assert lines[2].split() == ["1009", "张敏", "公证岗", "5、6", "停用", "数据库", "S1009"]
    starts = [_width(line[:line.rindex(last)]) for line, last in zip(lines, ("编号", "S001", "S1009"), strict=True)]
    assert len(set(starts)) == 1, lines       # columns line up on a terminal (a Chinese character is two wide)


def test_reports_and_the_ratings_list_name_a_clerk_added_with_hallctl(hall, monkeypatch, capsys):
    """The 月报表's 工作人员 and `hallctl ratings` read the roster in force, not the YAML alone: a clerk
    added with `hallctl staff` is 张敏（1009）there, not a bare id."""
    from hall_controller.upstream.service import build_month_report

    assert staff_cmd(hall, monkeypatch, "add", "1009", "张敏", "法律咨询岗", "--pin-stdin", stdin=NEW_PIN + "\n") == 0
    kiosk, w1 = hall.client("kiosk-1"), hall.client("window-1")
    w1.request("login", staff_id="1009", pin=NEW_PIN)
    ticket = kiosk.request("issue_ticket", service="consult")["ticket"]
    w1.request("call_next")
    w1.request("finish")
    hall.client("tablet-1").request("rate", ticket=ticket["id"], score=1)        # a 差评, so `hallctl ratings` lists the visit
    assert hall.store is not None
    report = build_month_report(hall.store.engine, hall.config, MONDAY.strftime("%Y-%m"), now=hall.clock.now())
    assert "张敏（1009）" in json.dumps(report, ensure_ascii=False)
    capsys.readouterr()
    assert hallctl(["ratings", "--config", str(hall.config_path)], clock=hall.clock) == 0
    assert "张敏（1009）" in capsys.readouterr().out
