"""Shared fixtures: the sample hall, a manual clock, stores on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", "/tmp/hall-escpos-cache")

import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from hall_controller.clock import ManualClock
from hall_controller.config import load_config, parse_config, sample_config_text

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
