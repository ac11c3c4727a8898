"""Shared fixtures: the sample hall, a manual clock, stores on SQLite and on a real PostgreSQL, the
management-system emulator, and the Qt app tests' real daemon (`hallctl run`) with QtHallBus clients
of it (tests/harness.py has the halls these build on)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", "/tmp/hall-escpos-cache")

import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from hall_controller.clock import ManualClock
from hall_controller.config import load_config, parse_config, sample_config_text

from .harness import DaemonProcess, free_port, init_hall, make_bus, no_devices, wait_online

TZ = ZoneInfo("Asia/Shanghai")
PG_ADMIN_URL = os.environ.get("HALL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def sample_data() -> dict:
    return yaml.safe_load(sample_config_text())


@pytest.fixture
def sample_config():
    return parse_config(sample_data(), "sample.yaml")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hall.yaml"
    path.write_text(sample_config_text(), encoding="utf-8")
    return path


@pytest.fixture
def loaded_config(config_file: Path):
    return load_config(config_file)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=TZ))   # a Monday morning


def _pg_database() -> tuple[str, str]:
    """Create a throw-away database on the real server; returns (url, name)."""
    import sqlalchemy as sa

    name = f"hall_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, name


def _drop_pg(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hall.db'}"
        return
    url, name = _pg_database()
    try:
        yield url
    finally:
        _drop_pg(name)


@pytest.fixture
def pg_url():
    url, name = _pg_database()
    try:
        yield url
    finally:
        _drop_pg(name)


@pytest.fixture
def pg_allow(pg_url: str) -> Iterator[Callable[[bool], None]]:
    """`pg_allow(False)`: the real PostgreSQL refuses pg_url's database and cuts its open connections (an
    outage); `pg_allow(True)` lets it back, as it does at the end."""
    import sqlalchemy as sa

    name = pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def allow(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                             {"n": name})

    try:
        yield allow
    finally:
        allow(True)
        admin.dispose()


@pytest.fixture
def emu():
    """The management-system emulator on an ephemeral port (token "tok")."""
    from hw_emulators.mgmt import MgmtEmulator

    with MgmtEmulator(token="tok") as emulator:
        yield emulator


@pytest.fixture
def client(emu):
    """An upstream client for `emu`; test modules with a client of another kind define their own."""
    from hall_controller.upstream.client import UpstreamClient

    return UpstreamClient(emu.url, "tok", timeout=2.0)


# ------------------------------------------------------------------ the Qt apps' daemon


@pytest.fixture(scope="session")
def hall_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised sample hall (no devices) per session; tests run on copies (init hashes every
    password and PIN, which takes seconds)."""
    return init_hall(tmp_path_factory.mktemp("hall-template"), no_devices).parent


@pytest.fixture
def hall_daemon(tmp_path: Path, hall_template: Path) -> Iterator[DaemonProcess]:
    """A fresh copy of the sample hall served by a real daemon process on an ephemeral port."""
    folder = tmp_path / "hall"
    shutil.copytree(hall_template, folder)
    daemon = DaemonProcess(folder / "hall.yaml", free_port())
    daemon.start()
    yield daemon
    daemon.kill()


@pytest.fixture
def ui_bus(qtbot: Any, hall_daemon: DaemonProcess) -> Iterator[Callable[..., Any]]:
    """Factory: `ui_bus(client_id, role=..., window=..., events=..., online=True)` -> a started
    QtHallBus of `hall_daemon` (waited until online unless `online=False`); all are closed at the end
    of the test."""
    made: list[Any] = []

    def factory(client_id: str, *, role: str, window: int | None = None, events: Any = None,
                online: bool = True) -> Any:
        bus = make_bus(hall_daemon, client_id, role, window=window, events=events)
        made.append(bus)
        bus.start()
        if online:
            wait_online(qtbot, bus)
        return bus

    yield factory
    for bus in made:
        bus.close()
