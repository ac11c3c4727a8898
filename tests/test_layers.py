"""The import contracts (.importlinter, run by .ci/run) hold on the tree and catch an import that goes
back up; hallctl finds `demo` as a plug-in command without hall_controller importing hall_demo."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hall_controller import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hall_demo", "hall_web", "window_terminal", "kiosk_ui", "hw_emulators", "hall_controller", "drivers",
            "device_profiles")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")     # the dev extra's import-linter


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on `tree` (its packages first on the path, so a scratch copy is what is read)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the packages' sources and the contracts, to add a bad import to."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_every_contract():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_unchanged_copy_keeps_them_too(scratch):
    """The control for the tests below: the copy itself is clean, so what breaks is the added line."""
    done = _lint(scratch)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("file", "line", "broken"), [
    # the store reaching up into the service it serves
    ("hall_controller/store/outbox.py", "from ..service import HallService", "hall_controller.store is not allowed"),
    # the daemon's package importing the demo above it
    ("hall_controller/cli.py", "import hall_demo.hall", "hall_controller is not allowed to import hall_demo"),
    # an app importing an emulator
    ("kiosk_ui/style.py", "import hw_emulators.mgmt", "kiosk_ui is not allowed to import hw_emulators"),
    # an app taking the daemon's insides rather than its client side
    ("window_terminal/state.py", "from hall_controller.store import Store", "window_terminal is not allowed"),
    # the phone pages' server asking the engine rather than the daemon over MQTT
    ("hall_web/view.py", "import hall_controller.service", "hall_web is not allowed to import hall_controller.service"),
    # I/O in the pure domain
    ("hall_controller/domain/today.py", "import threading", "hall_controller.domain is not allowed to import"),
    # the drivers reaching up into the daemon
    ("drivers/base.py", "import hall_controller.config", "drivers is not allowed to import hall_controller"),
])
def test_an_import_that_goes_back_up_fails(scratch, file, line, broken):
    _append(scratch / file, f"{line}  # noqa")
    done = _lint(scratch)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout


def test_hallctl_finds_the_demo_through_its_entry_point():
    parser = cli.build_parser()
    args = parser.parse_args(["demo", "--dir", "somewhere", "--no-ui"])
    assert args.func.__module__ == "hall_demo.cli"
    assert (args.dir, args.no_ui) == ("somewhere", True)
    assert "hall_demo" not in {m.split(".")[0] for m in _imported_by_hall_controller()}


def _imported_by_hall_controller() -> set[str]:
    """What a fresh interpreter has imported after loading every module of hall_controller's cli."""
    code = ("import sys, hall_controller.cli, hall_controller.daemon, hall_controller.admin;"
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_a_plugin_that_cannot_load_is_left_out(monkeypatch, caplog):
    broken = EntryPoint("broken", "no_such_package.cli:register", cli.COMMANDS_GROUP)
    demo = EntryPoint("demo", "hall_demo.cli:register", cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken, demo] if group == cli.COMMANDS_GROUP else [])
    with caplog.at_level(logging.WARNING, logger="hallctl"):
        parser = cli.build_parser()
    assert "hallctl command broken (no_such_package.cli:register) not available" in caplog.text
    assert parser.parse_args(["demo"]).func.__module__ == "hall_demo.cli"     # the others still work
    assert parser.parse_args(["sample-config"]).func is cli.cmd_sample_config
    with pytest.raises(SystemExit):
        parser.parse_args(["broken"])
