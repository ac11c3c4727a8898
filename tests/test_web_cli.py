"""`hall-web`'s command line: who it is on the bus and where it serves, from the config or an MQTT URL,
with the password from a file, systemd's credential or the hall's client-passwords file — never from
the command line — and what it says when something is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hall_web.cli import UsageError, main, options_from_args, parse_args

from .harness import init_hall, no_devices, passwords


@pytest.fixture
def config(tmp_path: Path) -> Path:
    def mutate(data: dict[str, Any]) -> None:
        no_devices(data)
        data["mqtt"]["listen"] = "0.0.0.0:18830"
        data["web"]["listen"] = "127.0.0.1:18080"

    return init_hall(tmp_path, mutate)


def resolve(*argv: str) -> Any:
    return options_from_args(parse_args(list(argv)))


def test_the_config_names_the_broker_the_password_and_where_to_serve(config: Path) -> None:
    options = resolve("--config", str(config))
    assert (options.client_id, options.hall_id) == ("web-1", "demo")
    assert (options.host, options.port, options.tls) == ("127.0.0.1", 18830, False)   # 0.0.0.0 reached on loopback
    assert options.password == passwords(config)["web-1"]
    assert options.listen == ("127.0.0.1", 18080)
    moved = resolve("--config", str(config), "--mqtt-url", "mqtt://127.0.0.1:1999", "--listen", "127.0.0.1:0")
    assert (moved.port, moved.listen) == (1999, ("127.0.0.1", 0))
    assert options.password not in repr(options)


def test_the_password_from_a_file_or_systemd_never_from_the_command_line(config: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "web-password"
    secret.write_text("s3cret-from-file\n")
    options = resolve("--mqtt-url", "mqtt://web-1@10.0.0.2:1883", "--hall", "demo", "--password-file", str(secret))
    assert (options.client_id, options.host, options.password) == ("web-1", "10.0.0.2", "s3cret-from-file")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert resolve("--config", str(config)).password == "from-systemd"
    with pytest.raises(UsageError, match="密码不要写在命令行里"):
        resolve("--mqtt-url", "mqtt://web-1:pw@10.0.0.2:1883", "--hall", "demo")


@pytest.mark.parametrize(("argv", "says"), [
    ((), "请指定 --config"),
    (("--mqtt-url", "mqtt://web-1@10.0.0.2:1883", "--hall", "demo"), "缺少 MQTT 密码"),
    (("--mqtt-url", "http://10.0.0.2"), "MQTT 地址须为"),
    (("--mqtt-url", "mqtts://web-1@10.0.0.2:8883", "--hall", "demo", "--password-file", "{pw}", "--ca",
      "/nonexistent/ca.crt"), "ca.crt"),
    (("--mqtt-url", "mqtt://web-1@10.0.0.2:1883", "--password-file", "{pw}"), "--hall"),
    (("--config", "{config}", "--client", "nobody"), "没有客户端 nobody"),
    (("--config", "{config}", "--listen", "8080"), "主机:端口"),
])
def test_what_is_missing_is_said(config: Path, tmp_path: Path, argv: tuple[str, ...], says: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    filled = [a.format(pw=pw, config=config) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("hall-web: ") and says in err, err
