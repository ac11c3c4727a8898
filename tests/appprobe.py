"""Run a hall Qt app as its own process with a probe, for tests of the real processes (kill -9, restart).

    python -c "from tests.appprobe import run; raise SystemExit(run('kiosk_ui.app', 'main_display'))" ARGS…

The app runs unchanged (its own `main`); the probe only wraps `kiosk_ui.appkit.place_window` to get
the top-level widget, then every 0.3 s writes what it shows to `$HALL_PROBE_DIR/<client>.json`:
`{"pid", "texts" (visible labels and buttons), "tables" (visible item views, rows of cells)}`. A file
`<client>.click` holding a button's text clicks that visible button; `<client>.grab` holding a path
saves a PNG of the window there.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

# the launcher's bootstrap template (hall_demo.apps.app_specs(bootstrap=…)) that runs the probe
PROBE_BOOTSTRAP = "from tests.appprobe import run; raise SystemExit(run({module!r}, {entry!r}))"
ROOT = Path(__file__).resolve().parent.parent


def probe_env(directory: Path) -> dict[str, str]:
    """Environment for probed children: where to report, and this checkout importable as `tests`."""
    path = os.environ.get("PYTHONPATH")
    return {"HALL_PROBE_DIR": str(directory), "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
            "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def read(directory: Path, client: str) -> dict[str, Any] | None:
    """The latest report of `client` (None before its first)."""
    try:
        return json.loads((directory / f"{client}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shown(report: dict[str, Any] | None) -> str:
    """Everything a report says the window shows, as one text."""
    if not report:
        return ""
    cells = [cell for table in report["tables"] for row in table for cell in row]
    return "\n".join([*report["texts"], *cells])


def ask(directory: Path, client: str, action: str, value: str) -> None:
    """Ask the probed app to `click` a button or `grab` a PNG."""
    target = directory / f"{client}.{action}"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(value, encoding="utf-8")
    os.replace(tmp, target)


def _client_id(argv: list[str]) -> str:
    return argv[argv.index("--client") + 1] if "--client" in argv else "app"


def run(module: str, entry: str) -> int:
    import sys

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QLabel, QWidget

    import kiosk_ui.appkit as appkit

    directory = Path(os.environ["HALL_PROBE_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    client = _client_id(sys.argv)
    original = appkit.place_window
    timers: list[QTimer] = []

    def report(top: QWidget) -> None:
        texts: list[str] = []
        tables: list[list[list[str]]] = []
        for widget in top.findChildren(QWidget):
            if not widget.isVisibleTo(top):
                continue
            if isinstance(widget, QLabel | QAbstractButton) and widget.text():
                texts.append(widget.text())
            elif isinstance(widget, QAbstractItemView) and widget.model() is not None:
                model = widget.model()
                tables.append([[str(model.data(model.index(r, c)) or "") for c in range(model.columnCount())]
                               for r in range(model.rowCount())])
        _write(directory / f"{client}.json", {"pid": os.getpid(), "texts": texts, "tables": tables})
        click = directory / f"{client}.click"
        if click.exists():
            wanted = click.read_text(encoding="utf-8")
            click.unlink()
            for button in top.findChildren(QAbstractButton):
                if button.isVisibleTo(top) and button.isEnabled() and wanted in button.text():
                    button.click()
                    break
        grab = directory / f"{client}.grab"
        if grab.exists():
            path = grab.read_text(encoding="utf-8")
            grab.unlink()
            top.grab().save(path)

    def place(widget: QWidget, options: Any, size: tuple[int, int]) -> None:
        original(widget, options, size)
        timer = QTimer(widget)
        timer.timeout.connect(lambda: report(widget))
        timer.start(300)
        timers.append(timer)

    appkit.place_window = place
    return int(getattr(importlib.import_module(module), entry)() or 0)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
