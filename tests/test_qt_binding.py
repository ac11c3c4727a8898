"""The installed Qt binding does not leak references to None/True/False, and it is the pinned release.

PySide6 6.12.0 on Python 3.11 takes one reference from `None` on every call of a bound method that
returns nothing (`setText`, `update`, `QTimer.start` …) and one from `True` on every `Signal.emit`: the
hall display (a marquee repainted every 30 ms) aborts with `Fatal Python error: none_dealloc` after
about 90 s, while each UI test runs for seconds and passes. These tests measure the leak directly in
seconds: the refcount levels of None, True and False across 100,000 calls of the kinds of methods the
apps use, in a child process (a leaking binding would otherwise abort the test run itself).

Runs with PySide6 and pytest only (no project imports), so it can be pointed at any other venv:
`/tmp/venv/bin/python -m pytest tests/test_qt_binding.py -p no:cacheprovider`.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
BINDING = ("PySide6-Essentials", "PySide6-Addons", "shiboken6")
BROKEN = ("6.12.0",)            # releases seen leaking (TOOLCHAIN.md, "Added 2026-12-06")
CALLS = 100_000
TOLERANCE = 50                  # a sound binding drifts by a handful at most; a leaking one by CALLS

# The child: 12 methods × CALLS/12 calls each after a warm-up; ballast keeps a leaking binding from freeing None
# mid-run, and os._exit skips the interpreter's teardown (where the leak would abort it).
PROBE = r'''
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6 import __version__ as version
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication, QCheckBox, QLabel, QPushButton, QStackedWidget, QWidget

total, control = int(sys.argv[1]), sys.argv[2] == "control"
app = QApplication([])
ballast = [None, True, False] * (2 * total)

class Model(QObject):
    changed = Signal()

model = Model()
widget, label, button, check, timer = QWidget(), QLabel("A001"), QPushButton("呼叫"), QCheckBox("x"), QTimer()
stack = QStackedWidget()
pages = [QWidget(), QWidget()]
for page in pages:
    stack.addWidget(page)
image = QImage(64, 64, QImage.Format.Format_RGB32)
painter = QPainter(image)
red = QColor("red")
methods = {
    "QWidget.update": (widget.update, ()),
    "QWidget.repaint": (widget.repaint, ()),
    "QLabel.setText": (label.setText, ("请A001号到3号窗口",)),
    "QAbstractButton.setChecked": (check.setChecked, (True,)),
    "QWidget.setEnabled": (button.setEnabled, (True,)),
    "QWidget.setVisible": (label.setVisible, (False,)),
    "QWidget.setStyleSheet": (label.setStyleSheet, ("color: red;",)),
    "QTimer.start": (timer.start, (30,)),
    "QStackedWidget.setCurrentWidget": (stack.setCurrentWidget, (pages[1],)),
    "QPainter.fillRect": (painter.fillRect, (0, 0, 8, 8, red)),
    "QPainter.drawText": (painter.drawText, (0, 10, "A001")),
    "Signal.emit": (model.changed.emit, ()),
}
if control:     # the positive control: a call that takes one reference from None, as 6.12.0 does
    import ctypes
    decref, none = ctypes.pythonapi.Py_DecRef, ctypes.py_object(None)
    decref.argtypes, decref.restype = [ctypes.py_object], None
    methods = {"leak": (decref, (none,))}
each = -(-total // len(methods))
watched = {"None": None, "True": True, "False": False}
drift = {}
for name, (method, args) in methods.items():
    for _ in range(500):        # warm-up: the first calls of an overload fill caches that hold None
        method(*args)
    before = {k: sys.getrefcount(v) for k, v in watched.items()}
    for _ in range(each):
        method(*args)
    drift[name] = {k: sys.getrefcount(v) - before[k] for k, v in watched.items()}
painter.end()
print(json.dumps({"version": version, "calls": each * len(methods), "drift": drift}), flush=True)
os._exit(0)
'''


def measure(control: bool = False, calls: int = CALLS) -> dict:
    """Run PROBE on this interpreter's PySide6; its report (per method: drift of None/True/False)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(calls), "control" if control else "real"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, f"probe failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def leaks(report: dict) -> dict[str, dict[str, int]]:
    """The methods whose calls moved a refcount by more than the tolerance (per 100,000 calls)."""
    scale = CALLS / report["calls"]
    return {name: d for name, d in report["drift"].items() if any(abs(v) * scale > TOLERANCE for v in d.values())}


def test_qt_calls_keep_the_refcounts_of_none_true_false() -> None:
    report = measure()
    assert report["calls"] >= CALLS * 0.99
    total = {k: sum(d[k] for d in report["drift"].values()) for k in ("None", "True", "False")}
    assert not leaks(report), (
        f"PySide6 {report['version']} leaks references across {report['calls']:,} calls: {leaks(report)} "
        f"(total {total}). A long-running app aborts with 'Fatal Python error: none_dealloc'. "
        f"Install the release pinned in setup.cfg (./bootstrap.sh setup).")


def test_the_measurement_sees_a_leak() -> None:
    """Positive control: a call that takes a reference from None, as 6.12.0's bound methods do, is caught."""
    report = measure(control=True, calls=20_000)
    assert report["drift"]["leak"]["None"] == -20_000
    assert leaks(report) == {"leak": {"None": -20_000, "True": 0, "False": 0}}


def _ui_pins() -> dict[str, Requirement]:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG, encoding="utf-8")
    lines = [line.strip() for line in parser["options.extras_require"]["ui"].splitlines() if line.strip()]
    return {(req := Requirement(line)).name.lower(): req for line in lines}


def test_the_ui_extra_pins_the_whole_binding_and_excludes_broken_releases() -> None:
    pins = _ui_pins()
    assert {name.lower() for name in BINDING} <= set(pins), f"setup.cfg ui extra must pin {BINDING}: {pins}"
    for name in BINDING:
        spec = pins[name.lower()].specifier
        for broken in BROKEN:
            assert not spec.contains(broken), f"{name}{spec} allows the broken release {broken}"
    assert len({str(pins[name.lower()].specifier) for name in BINDING}) == 1, "the three must share one pin"


@pytest.mark.parametrize("name", BINDING)
def test_the_installed_binding_satisfies_the_pin(name: str) -> None:
    installed = metadata.version(name)
    spec = _ui_pins()[name.lower()].specifier
    assert spec.contains(installed, prereleases=True), (
        f"{name} {installed} installed, setup.cfg wants {spec}: run ./bootstrap.sh setup")
    # shiboken6 is the binding's runtime: a mix of releases is not a tested combination
    assert Version(installed) == Version(metadata.version("shiboken6"))
