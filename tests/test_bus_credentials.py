"""Credential store: roles, hashes in Mosquitto's $7$ format, atomic 0600 file, reload on change."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from hall_controller.bus.credentials import (
    DAEMON_CLIENT_ID,
    CredentialError,
    CredentialStore,
    check_password,
    hash_password,
)

from .harness import FAST_HASH


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "conf" / "credentials.yaml", iterations=FAST_HASH)


def test_add_returns_a_strong_generated_password_and_verify_checks_it(store):
    password = store.add_or_reset("kiosk-1", "kiosk")
    assert len(password) >= 20
    assert store.verify("kiosk-1", password)
    assert not store.verify("kiosk-1", password + "x")
    assert not store.verify("nobody", password)
    assert store.add_or_reset("kiosk-2", "kiosk") != password


def test_reset_replaces_password_role_and_window(store):
    old = store.add_or_reset("window-3", "window", 3, "first")
    assert old == "first"
    store.add_or_reset("window-3", "tablet", 5, "second")
    cred = store.get("window-3")
    assert (cred.role, cred.window) == ("tablet", 5)
    assert store.verify("window-3", "second") and not store.verify("window-3", "first")


@pytest.mark.parametrize("client_id, role, window", [
    ("tablet-3", "tablet", None), ("window-3", "window", 0), ("tablet-3", "tablet", 0), ("tablet-3", "tablet", True),
    ("kiosk-1", "kiosk", 2), ("x", "superuser", None), ("bad id", "kiosk", None), ("a/b", "kiosk", None),
    ("user:x", "kiosk", None), ("", "kiosk", None), ("not-the-daemon", "daemon", None),
    (DAEMON_CLIENT_ID, "admin", None),
])
def test_invalid_clients_are_refused(store, client_id, role, window):
    with pytest.raises(CredentialError):
        store.add_or_reset(client_id, role, window)
    assert store.clients() == []


@pytest.mark.parametrize("password", ["", "a\nb", "x" * 257, "nul\0"])
def test_invalid_passwords_are_refused(store, password):
    with pytest.raises(CredentialError):
        store.add_or_reset("kiosk-1", "kiosk", password=password)


def test_file_is_yaml_with_hashes_only_mode_0600_and_no_temp_files_left(store):
    store.add_or_reset(DAEMON_CLIENT_ID, "daemon", password="secret-1")
    store.add_or_reset("window-3", "window", 3, password="secret-2")
    text = store.path.read_text()
    assert "secret-1" not in text and "secret-2" not in text
    assert "window-3:\n  role: window\n  window: 3\n  password_hash: $7$1000$" in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["credentials.yaml"]
    again = CredentialStore(store.path)
    assert [(c.client_id, c.role, c.window) for c in again.clients()] == [
        (DAEMON_CLIENT_ID, "daemon", None), ("window-3", "window", 3)]
    assert again.verify("window-3", "secret-2")


def test_changes_by_another_process_are_seen(store):
    store.add_or_reset("kiosk-1", "kiosk", password="one")
    other = CredentialStore(store.path, iterations=FAST_HASH)  # e.g. `hallctl client add` while the daemon runs
    other.add_or_reset("kiosk-2", "kiosk", password="two")
    assert store.verify("kiosk-2", "two")
    assert other.remove("kiosk-1") and not other.remove("kiosk-1")
    assert store.get("kiosk-1") is None
    store.path.unlink()
    assert store.clients() == []


def test_a_file_broken_while_running_keeps_the_last_good_content_in_use(store, caplog):
    store.add_or_reset("kiosk-1", "kiosk", password="one")
    store.path.write_text("kiosk-1: {role: kiosk\n")  # an editor saved half a line
    assert store.verify("kiosk-1", "one")
    assert [c.client_id for c in store.clients()] == ["kiosk-1"]
    assert sum("keeping the 1 clients read before" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(CredentialError):
        store.add_or_reset("kiosk-2", "kiosk")  # never write over a file we could not read
    store.path.unlink()
    assert store.get("kiosk-1") is None  # deleting the file revokes everyone


def test_a_write_that_fails_leaves_the_old_file_intact(store, monkeypatch):
    store.add_or_reset("kiosk-1", "kiosk", password="one")
    before = store.path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.add_or_reset("kiosk-2", "kiosk")
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["credentials.yaml"]


@pytest.mark.parametrize("content, fragment", [
    ("- a\n- b\n", "mapping"),
    ("kiosk-1: [1]\n", "entry must be a mapping"),
    ("kiosk-1: {role: kiosk}\n", "password_hash missing"),
    ("kiosk-1: {role: kiosk, password_hash: plain}\n", "$7$"),
    ("kiosk-1: {role: kiosk, password_hash: '$7$10$!!$!!'}\n", "malformed"),
    ("kiosk-1: {role: wizard, password_hash: x}\n", "unknown role"),
    ("kiosk-1: {role: kiosk, pasword_hash: x}\n", "unknown keys"),
    ("'bad id': {role: kiosk, password_hash: x}\n", "invalid client id"),
    ("kiosk-1: {role: kiosk\n", "cannot read"),
])
def test_malformed_files_are_reported_with_the_file_name(tmp_path, content, fragment):
    path = tmp_path / "credentials.yaml"
    path.write_text(content)
    with pytest.raises(CredentialError) as err:
        CredentialStore(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_hash_format_is_mosquittos_pbkdf2_sha512(tmp_path):
    """A hash made by mosquitto_passwd verifies here, and ours parses the same way."""
    passwd = tmp_path / "passwd"
    tool = "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    subprocess.run([tool, "-c", "-b", str(passwd), "alice", "s3cret äöü"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert check_password("s3cret äöü", theirs) and not check_password("s3cret", theirs)
    ours = hash_password("pw", iterations=101, salt=bytes(range(12)))
    assert ours.startswith("$7$101$AAECAwQFBgcICQoL$") and len(ours.rsplit("$", 1)[1]) == 88
    assert not check_password("pw", "$6$rounds$x$y") and not check_password("pw", "garbage")


def test_a_rewrite_keeps_the_files_group_and_group_read_bit_but_never_world(tmp_path):
    """An installed hall's store is root:hall 0640 so the daemon (user hall) reads it; `hallctl client
    add`, run as root, must not turn it into root-only 0600 behind the daemon's back."""
    path = tmp_path / "credentials.yaml"
    store = CredentialStore(path, iterations=FAST_HASH)
    store.add_or_reset("kiosk-1", "kiosk")
    os.chmod(path, 0o644)               # world-readable by mistake: the rewrite takes that bit away
    other_gid = os.getgid() if os.getuid() != 0 else 65534    # root can give it another group (nogroup)
    if os.getuid() == 0:
        os.chown(path, 0, other_gid)
    store.add_or_reset("kiosk-2", "kiosk")
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_gid == other_gid
    os.chmod(path, 0o600)
    store.add_or_reset("kiosk-3", "kiosk")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
