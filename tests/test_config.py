"""Hall config: the sample is valid; each kind of mistake is named by file and field."""

from __future__ import annotations

import copy

import pytest
import yaml

from hall_controller.config import ConfigError, load_config, parse_config, sample_config_text, verify_pin

from .conftest import sample_data


def test_sample_config_is_the_demo_hall(sample_config):
    c = sample_config
    assert c.hall_id == "demo" and c.name == "示范区公共法律服务中心"
    assert {(s.code, s.prefix, s.name) for s in c.services} >= {
        ("consult", "A", "法律咨询"), ("legal_aid", "B", "法律援助"), ("mediation", "C", "人民调解"),
        ("notary", "D", "公证服务"), ("appraisal", "E", "司法鉴定")}
    assert c.service("general").prefix == "F" and "投诉建议" in c.service("general").name
    assert [s.id for s in c.staff] == [f"S00{i}" for i in range(1, 9)]
    assert all(verify_pin("1234", s.pin_hash) and not verify_pin("4321", s.pin_hash) for s in c.staff)
    assert [w.number for w in c.windows] == list(range(1, 9))
    assert [ws.service for ws in c.window(7).services] == ["notary", "appraisal"]
    assert any(len(w.services) > 1 for w in c.windows)
    ids = {cl.id for cl in c.clients}
    assert {"kiosk-1", "kiosk-2", "display-1", "admin"} | {f"window-{n}" for n in range(1, 9)} \
        | {f"tablet-{n}" for n in range(1, 9)} <= ids
    assert all(c.opening_hours[d] for d in c.opening_hours)          # usable at any hour
    assert all(s.materials for s in c.services)                      # one-time notification slips
    assert {d.kind for d in c.devices} >= {"controller", "led", "keypad", "card_reader", "printer", "speaker"}
    assert all(d.url == "emulated" for d in c.devices if d.url)


def _broken(mutate) -> ConfigError:
    data = sample_data()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "hall.yaml")
    return err.value


def _set(path, value):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


BAD_CONFIGS = [
    ("unknown service on a window", lambda d: d["windows"][2]["services"].append({"service": "tax"}),
     "windows[2] (window 3).services[1].service", "unknown service 'tax'"),
    ("duplicate prefix", _set(["services", 1, "prefix"], "A"), "services[1] (legal_aid).prefix", "duplicate prefix"),
    ("bad time", _set(["rules", "day_reset"], "25:00"), "rules.day_reset", "HH:MM"),
    ("bad opening span", _set(["hall", "opening_hours"], {"mon": "17:00-09:00"}), "hall.opening_hours.mon",
     "ends before it starts"),
    ("duplicate window", _set(["windows", 1, "number"], 1), "windows[1] (window 1).number", "duplicate window"),
    ("lowercase prefix", _set(["services", 0, "prefix"], "a"), "services[0] (consult).prefix", "capital letter"),
    ("negative time limit", _set(["services", 0, "time_limit_minutes"], -5),
     "services[0] (consult).time_limit_minutes", "at least 1"),
    ("unknown role", lambda d: d["clients"].append({"id": "x", "role": "boss"}), "clients[22] (x).role",
     "unknown role"),
    ("tablet client without window", lambda d: d["clients"].append({"id": "t9", "role": "tablet"}),
     "clients[22] (t9).window", "is required"),
    ("unknown timezone", _set(["hall", "timezone"], "Mars/Olympus"), "hall.timezone", "unknown time zone"),
    ("unknown field", _set(["rules", "elderly_agee"], 60), "rules.elderly_agee", "unknown field"),
    ("bad staff position", _set(["staff", 0, "position"], "保安"), "staff[0] (S001).position", "unknown position"),
    ("plain-text pin", _set(["staff", 0, "pin_hash"], "1234"), "staff[0] (S001).pin_hash", "pbkdf2"),
    ("device on unknown bus", _set(["devices", 1, "bus"], "bus-9"), "devices (led-1).bus", "not a controller"),
    ("unknown device kind", _set(["devices", 0, "kind"], "fax"), "devices[0] (bus-1).kind", "unknown device kind"),
    ("address outside the profile's range", _set(["devices", 1, "address"], 255), "devices (led-1).address",
     "outside 1–254"),
    ("typo in a device option", _set(["devices", 1, "options"], {"idle_txt": "您好"}),
     "devices (led-1).options.idle_txt", "unknown option"),
    ("profile of another kind", _set(["devices", 1, "profile"], "dory-keypad"), "devices (led-1).profile",
     "not a led"),
    ("unknown profile", _set(["devices", 1, "profile"], "acme-led"), "devices (led-1).profile", "acme-led"),
    ("warn ratio out of range", _set(["rules", "time_limit_warn_ratio"], 1.5), "rules.time_limit_warn_ratio",
     "between 0 and 1"),
    ("client on undefined window", lambda d: d["clients"].append({"id": "w12", "role": "window", "window": 12}),
     "clients[22] (w12).window", "not defined"),
    ("hall id with a slash", _set(["hall", "id"], "demo/1"), "hall.id", "not valid"),
    ("no services", _set(["services"], []), "services", "at least one"),
    ("bad database url", _set(["database"], "hall.db"), "database", "SQLAlchemy URL"),
]


@pytest.mark.parametrize("name, mutate, field, text", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_naming_the_field(name, mutate, field, text):
    err = _broken(mutate)
    assert (field, ) == tuple(f for f, m in err.problems if f == field)[:1], err.problems
    message = dict(err.problems)[field]
    assert text in message
    assert f"hall.yaml: {field}: " in str(err)


def test_several_problems_are_reported_together():
    def mutate(d):
        d["services"][1]["prefix"] = "A"
        d["rules"]["day_reset"] = "7am"
    err = _broken(mutate)
    fields = [f for f, _ in err.problems]
    assert "services[1] (legal_aid).prefix" in fields and "rules.day_reset" in fields


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("hall:\n  id: demo\n  name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "line" in err.value.field


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_relative_paths_resolve_next_to_the_config(tmp_path):
    path = tmp_path / "site" / "hall.yaml"
    path.parent.mkdir()
    path.write_text(sample_config_text(), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.database == f"sqlite:///{path.parent / 'hall.db'}"
    assert cfg.credentials_path == str(path.parent / "credentials.yaml")


def test_sample_round_trips_through_yaml():
    data = yaml.safe_load(sample_config_text())
    again = parse_config(copy.deepcopy(data), "x.yaml")
    assert len(again.services) == 6
