"""The short form of bench/soak.py: the four Qt apps (Xvfb when installed, else offscreen) next to a
working hall for a minute; fails if an app dies, logs an error or a traceback, or does not stop cleanly
(PySide6 6.12.0 aborted the display within minutes and the others at exit: none_dealloc)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def _soak():
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_soak"] = module
    spec.loader.exec_module(module)
    return module


def test_a_death_an_error_or_an_unclean_stop_fails_the_soak(tmp_path: Path) -> None:
    """The verdict's positive control, on the report alone."""
    soak = _soak()
    log = tmp_path / "hall-display.log"
    log.write_text("2026-12-07 09:00:00,000 INFO kiosk_ui: started\n"
                   "Fatal Python error: none_dealloc: deallocating None\n", encoding="utf-8")
    assert soak._scan(log)[:2] == (1, 1)
    log.write_text("2026-12-07 09:00:00,000 ERROR kiosk_ui.qtbus: broker refused\n", encoding="utf-8")
    assert soak._scan(log)[:2] == (1, 0)
    assert soak.AppReport("hall-display", 1, exit_at_stop=0).ok
    assert not soak.AppReport("hall-display", 1, exit_at_stop=-6).ok            # aborted at exit
    assert not soak.AppReport("hall-display", 1, alive=False, exit_at_stop=0).ok
    assert not soak.AppReport("hall-display", 1, errors=1, exit_at_stop=0).ok


@pytest.mark.slow
def test_the_apps_stay_up_through_a_minute_of_a_working_hall(tmp_path: Path) -> None:
    soak = _soak()
    result = soak.run_soak(1.0, tmp_path / "soak", screenshot=tmp_path / "soak.png")
    report = result.table()
    print(report)
    # the four Qt apps and the visitor's phone page server (watched like an app, with hall pages open)
    assert set(result.apps) == {"hall-kiosk", "hall-display", "hall-window", "hall-tablet", "hall-web"}, report
    for app in result.apps.values():
        assert app.alive, f"{app.name} died (exit {app.exits}):\n{report}"
        assert app.errors == 0, f"{app.name} logged errors:\n{report}"
        assert app.exit_at_stop == 0, f"{app.name} did not stop cleanly:\n{report}"
        assert app.samples >= 5 and app.rss_start is not None and app.rss_end is not None
    c = result.counts
    # the hall really worked: calls (one per 2 s at least, with slack for a loaded machine), ratings, a card
    assert c.calls >= 15 and c.recalls >= 5 and c.ratings >= 5 and c.cards >= 1, report
    assert c.driver_errors <= 2 and result.daemon_errors == 0, report
    assert result.ok
