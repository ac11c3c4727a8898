"""The city broker's accounts (`hallctl city-credentials`): the generated passwd/ACL/conf enforced by a
real Mosquitto — a hall writes only its own `city/{district}/{hall}/#` and reads nothing, hall-city
reads everything and writes nothing, wrong passwords are refused, no password in a log or argv."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hall_controller.bus.city_accounts import CityCredentialStore, hall_prefix, hall_username
from hall_controller.bus.credentials import CredentialError, check_password

from .harness import Mosquitto, RawClient, free_port, have_mosquitto, wait_until

HALLCTL = [sys.executable, "-m", "hall_controller.cli"]
A = ("310101", "hall-a")
B = ("310102", "hall-b")
A_USER, B_USER = hall_username(*A), hall_username(*B)
A_TOPIC, B_TOPIC = hall_prefix(*A), hall_prefix(*B)


def hallctl(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`hallctl city-credentials` as the city's IT person runs it, logging everything (DEBUG)."""
    return subprocess.run([*HALLCTL, "--log-level", "DEBUG", "city-credentials", "--store", str(store), *args],
                          capture_output=True, text=True, timeout=60)


class City:
    """A real Mosquitto started with the files `hallctl city-credentials mosquitto` wrote."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.store = workdir / "city-accounts.yaml"
        self.runs: list[subprocess.CompletedProcess[str]] = []
        self.passwords: dict[str, str] = {}
        for (district, hall), user in ((A, A_USER), (B, B_USER)):
            out = workdir / f"{hall}-password"
            self._run("add", hall, "--district", district, "--password-out", str(out))
            self.passwords[user] = out.read_text().splitlines()[0]
        self.port = free_port()
        self._run("mosquitto", str(workdir / "mqtt"), "--port", str(self.port), "--bind", "127.0.0.1")
        self.passwords["hall-city"] = (workdir / "mqtt" / "hall-city-password").read_text().splitlines()[0]
        self.broker = Mosquitto(workdir, (workdir / "mqtt" / "city.conf").read_text())
        self.broker.start(self.port)
        self.clients: list[RawClient] = []

    def _run(self, *args: str) -> None:
        done = hallctl(self.store, *args)
        assert done.returncode == 0, done.stderr
        self.runs.append(done)

    def client(self, user: str, password: str | None = None) -> RawClient:
        client = RawClient(self.port, user, self.passwords[user] if password is None else password)
        self.clients.append(client)
        return client

    def connect(self, user: str, *, will: tuple[str, str] | None = None) -> RawClient:
        client = self.client(user)
        assert client.connect(will=will), f"{user} refused: {client.connack}"
        return client

    def close_clients(self) -> None:
        """Each test's own connections end with it: the same account connecting twice takes over."""
        for c in self.clients:
            c.close()
        self.clients.clear()

    def stop(self) -> None:
        self.close_clients()
        self.broker.stop()


pytestmark = [pytest.mark.mosquitto, pytest.mark.skipif(not have_mosquitto(), reason="no mosquitto binary")]


@pytest.fixture(scope="module")
def city_broker(tmp_path_factory):
    city = City(tmp_path_factory.mktemp("city"))
    yield city
    city.stop()


@pytest.fixture
def city(city_broker):
    yield city_broker
    city_broker.close_clients()


def topics(client: RawClient) -> list[str]:
    with client.lock:
        return [t for t, _, _ in client.messages]


def test_a_hall_publishes_under_its_own_prefix_and_hall_city_receives_it(city):
    reader = city.connect("hall-city")
    reader.subscribe("city/#")
    hall = city.connect(A_USER)
    hall.publish(f"{A_TOPIC}/summary", b'{"schema":1}', retain=True)
    hall.publish(f"{A_TOPIC}/alert/bad_rating", b'{"id":"1"}')
    wait_until(lambda: len(reader.received()) >= 2, what="the hall's messages at hall-city")
    assert topics(reader) == [f"{A_TOPIC}/summary", f"{A_TOPIC}/alert/bad_rating"]
    reader.close()
    again = city.connect("hall-city")
    again.subscribe(f"{A_TOPIC}/summary")
    wait_until(lambda: again.received(), what="the retained summary")
    assert again.messages[0] == (f"{A_TOPIC}/summary", b'{"schema":1}', True)


def test_a_hall_cannot_publish_to_another_halls_prefix_or_outside_city(city):
    reader = city.connect("hall-city")
    reader.subscribe("city/#", "#")
    hall = city.connect(A_USER)
    for topic in (f"{B_TOPIC}/summary", f"{B_TOPIC}/alert/bad_rating", "city/310101/hall-b/summary",
                  "city/310101/summary", "city/summary", "hall/demo/cmd/window-3", "other", f"{A_TOPIC}x/summary"):
        hall.publish(topic, b"spoofed", retain=True)
    hall.publish(f"{A_TOPIC}/online", b"sentinel")
    wait_until(lambda: reader.received(f"{A_TOPIC}/online"), what="the sentinel")
    assert b"spoofed" not in reader.received()
    assert all(t.startswith(f"{A_TOPIC}/") for t in topics(reader)), topics(reader)


def test_a_hall_reads_nothing_not_even_its_own_topics(city):
    hall = city.connect(A_USER)
    hall.subscribe("city/#", f"{A_TOPIC}/#", f"{A_TOPIC}/summary", f"{B_TOPIC}/#", "#")   # Mosquitto 2.0 grants
    other = city.connect(B_USER)
    reader = city.connect("hall-city")
    reader.subscribe("city/#")
    other.publish(f"{B_TOPIC}/summary", b"b-live")
    hall.publish(f"{A_TOPIC}/summary", b"a-live", retain=True)
    wait_until(lambda: {b"a-live", b"b-live"} <= set(reader.received()), what="both halls at hall-city")
    hall.publish(f"{A_TOPIC}/online", b"sentinel")
    wait_until(lambda: b"sentinel" in reader.received(), what="the sentinel")
    assert hall.received() == []        # … but delivers neither live messages nor the retained ones


def test_hall_city_reads_everything_and_cannot_publish(city):
    reader = city.connect("hall-city")
    reader.subscribe("city/#")
    for topic in (f"{A_TOPIC}/summary", f"{B_TOPIC}/alert/bad_rating", "city/_service/hall-city", "other"):
        reader.publish(topic, b"from-hall-city", retain=True)
    city.connect(B_USER).publish(f"{B_TOPIC}/summary", b"from-b")
    wait_until(lambda: b"from-b" in reader.received(), what="hall B's summary")
    assert b"from-hall-city" not in reader.received()


def test_a_halls_last_will_goes_to_its_own_prefix_only(city):
    reader = city.connect("hall-city")
    reader.subscribe("city/#")
    dying = city.client(A_USER)
    assert dying.connect(will=(f"{A_TOPIC}/online", '{"online": false, "will": true}'))
    dying.mqtt.socket().shutdown(2)     # the hall PC vanishes: no DISCONNECT, so the will is sent
    wait_until(lambda: reader.received(f"{A_TOPIC}/online"), what="hall A's will")
    spoofer = city.client(B_USER)       # a will on another hall's prefix: accepted at CONNECT, never sent
    assert spoofer.connect(will=(f"{A_TOPIC}/online", '{"online": false, "spoofed": true}'))
    seen = len(city.broker.log.read_text())
    spoofer.mqtt.socket().shutdown(2)
    wait_until(lambda: f"Client {B_USER} closed its connection" in city.broker.log.read_text()[seen:],
               what="Mosquitto to drop hall B (and decide on its will)")
    city.connect(A_USER).publish(f"{A_TOPIC}/summary", b"sentinel")
    wait_until(lambda: b"sentinel" in reader.received(), what="the sentinel")
    assert reader.received(f"{A_TOPIC}/online") == [b'{"online": false, "will": true}']


@pytest.mark.parametrize("user,password", [(A_USER, "wrong"), ("hall-city", "wrong"), (A_USER, ""),
                                           ("hall-310101-nobody", "x"), ("hall-city", None)])
def test_wrong_passwords_and_unknown_accounts_are_refused(city, user, password):
    if password is None:    # another account's password
        password = city.passwords[A_USER]
    client = city.client(user, password)
    assert not client.connect()
    assert client.connack.value == 135     # not authorised


def test_no_password_in_logs_argv_the_store_or_the_broker_log(city):
    secrets = list(city.passwords.values())
    assert all(len(s) >= 20 for s in secrets)
    for done in city.runs:
        assert "city account" in done.stdout or "passwd" in done.stdout
        for secret in secrets:
            assert secret not in done.stderr and secret not in done.stdout and secret not in " ".join(done.args)
    broker_log = city.broker.log.read_text()
    assert A_USER in broker_log       # it does log who connected…
    for path in [city.store, *(city.workdir / "mqtt").glob("*")]:
        text = path.read_text()
        for secret in secrets:
            # …but no password; only the files meant to carry one do
            assert (secret in text) == (path.name == "hall-city-password" and secret == city.passwords["hall-city"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for secret in secrets:
        assert secret not in broker_log
    # shown once on stdout without --password-out; no option takes a password in argv
    done = hallctl(city.workdir / "other.yaml", "add", "c", "--district", "310103")
    password = CityCredentialStore(city.workdir / "other.yaml").get(hall_username("310103", "c"))
    assert password is not None and done.returncode == 0
    shown = [line.rsplit(" ", 1)[1] for line in done.stdout.splitlines() if "shown once" in line]
    assert len(shown) == 1 and check_password(shown[0], password.password_hash) and shown[0] not in done.stderr
    assert hallctl(city.workdir / "other.yaml", "add", "c", "--district", "310103", "--password", "x").returncode == 2


def test_a_new_password_takes_over_after_a_reload_and_a_removed_hall_is_refused(tmp_path):
    city = City(tmp_path)
    try:
        old = city.passwords[A_USER]
        city._run("add", A[1], "--district", A[0], "--password-out", str(tmp_path / "new"))
        assert "旧密码现已作废" in city.runs[-1].stdout and "旧密码" not in city.runs[0].stdout
        city.passwords[A_USER] = (tmp_path / "new").read_text().strip()
        city._run("remove", B[1])
        city._run("mosquitto", str(tmp_path / "mqtt"), "--port", str(city.port), "--bind", "127.0.0.1")
        assert city.broker.proc is not None
        os.kill(city.broker.proc.pid, signal.SIGHUP)       # systemctl reload mosquitto
        stale = city.client(A_USER, old)
        wait_until(lambda: not stale.connect(), what="the old password refused after the reload")
        city.connect(A_USER)
        assert not city.client(B_USER).connect()
        listed = hallctl(city.store, "list").stdout
        assert A_USER in listed and "hall-city" in listed and B_USER not in listed
    finally:
        city.stop()


def test_bad_names_and_clashes_are_refused(tmp_path):
    store = CityCredentialStore(tmp_path / "accounts.yaml")
    for hall, district in [("a/b", "310101"), ("a", "31/01"), ("+", "310101"), ("a", "#"), ("a", "3" * 33),
                           ("a", "31.01"), ("a" * 60, "310101"), ("", "310101"), ("a", "_x")]:
        with pytest.raises(CredentialError):
            store.add_hall(hall, district)
    store.add_hall("c", "a-b")
    with pytest.raises(CredentialError, match="already the account of hall c of district a-b"):
        store.add_hall("b-c", "a")          # the same account name hall-a-b-c for another hall
    with pytest.raises(CredentialError, match="already the account"):
        store.add_service("hall-a-b-c")
    assert [a.username for a in store.accounts()] == ["hall-a-b-c"]
    store.add_hall("c", "310101")
    done = hallctl(tmp_path / "accounts.yaml", "remove", "c")
    assert done.returncode == 1 and "--district" in done.stderr
    assert hallctl(tmp_path / "accounts.yaml", "remove", "c", "--district", "310101").returncode == 0
    assert [a.username for a in store.accounts()] == ["hall-a-b-c"]


def test_a_hand_edited_account_must_match_its_hall(tmp_path):
    path = tmp_path / "accounts.yaml"
    store = CityCredentialStore(path)
    account, password = store.add_hall("a", "310101")
    data = yaml.safe_load(path.read_text())
    data[account.username]["hall"] = "b"       # would let hall-310101-a write as hall b
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CredentialError, match="hall-{district}-{hall}"):
        CityCredentialStore(path)
    assert store.verify(account.username, password)    # a running reader keeps the last good file
    done = hallctl(path, "list")
    assert done.returncode == 2 and "hall-{district}-{hall}" in done.stderr


def test_halls_reach_the_city_broker_over_tls_and_the_plain_listener_stays_on_the_loopback(tmp_path):
    from hall_controller.bus.tls import ensure_hall_ca

    tls = ensure_hall_ca(tmp_path / "tls", "市级平台", ["localhost"], ["127.0.0.1"])
    store = tmp_path / "accounts.yaml"
    assert hallctl(store, "add", A[1], "--district", A[0], "--password-out", str(tmp_path / "pw")).returncode == 0
    port, tls_port = free_port(), free_port()
    common = ["--tls-dir", str(tmp_path / "tls"), "--port", str(port), "--tls-port", str(tls_port)]
    refused = hallctl(store, "mosquitto", str(tmp_path / "mqtt"), *common, "--bind", "0.0.0.0")
    assert refused.returncode == 2 and "loopback" in refused.stderr
    assert hallctl(store, "mosquitto", str(tmp_path / "mqtt"), *common).returncode == 0
    conf = (tmp_path / "mqtt" / "city.conf").read_text()
    assert f"listener {port} 127.0.0.1\n" in conf and f"listener {tls_port}\n" in conf
    broker = Mosquitto(tmp_path, conf)
    broker.start(port, tls_port)
    clients = [RawClient(port, "hall-city", (tmp_path / "mqtt" / "hall-city-password").read_text().strip()),
               RawClient(tls_port, A_USER, (tmp_path / "pw").read_text().strip()),
               RawClient(tls_port, A_USER, (tmp_path / "pw").read_text().strip())]
    reader, hall, untrusting = clients
    try:
        assert reader.connect()
        reader.subscribe("city/#")
        hall.mqtt.tls_set(ca_certs=str(tls.ca_cert))
        assert hall.connect()
        hall.publish(f"{A_TOPIC}/summary", b"over-tls")
        wait_until(lambda: reader.received() == [b"over-tls"], what="the summary sent over TLS")
        untrusting.mqtt.tls_set()       # the system's CAs only: the city's certificate is not trusted
        with pytest.raises(OSError):
            untrusting.connect()
    finally:
        for c in clients:
            c.close()
        broker.stop()
