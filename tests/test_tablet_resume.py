"""A rating tablet restarted mid-rating (kill -9, a power cut) asks the visitor again: the window's
retained state names the visit still waiting for its rating (`rating_pending`)."""

from __future__ import annotations

from kiosk_ui import tablet_state as ts

TICKET = {"id": "t-1", "number": "A007", "service": "consult", "status": "done"}


def _view(pending: dict | None = None, **extra) -> dict:
    return {"number": 1, "status": "idle", "staff": {"name": "王芳"}, "ticket": None,
            "rating_pending": {"ticket": pending, "rating_until": "2026-12-07T09:03:00+00:00"} if pending else None,
            **extra}


def test_a_fresh_tablet_opens_the_pending_rating_once() -> None:
    state = ts.on_window(ts.TabletState(window=1, since=100.0), _view(TICKET), 100.0)
    assert state.screen == ts.RATING and state.request == TICKET and state.since == 100.0
    rated = ts.on_rate_reply(ts.submit(ts.choose_score(state, 5, 101.0), 102.0)[0], 102.5, ok=True)
    assert rated.screen == ts.THANKS
    idle, _ = ts.tick(rated, 200.0)
    # the daemon's next window state may still name it for a moment: not asked twice
    assert ts.on_window(idle, _view(TICKET), 200.5).screen == ts.IDLE


def test_a_rating_left_unanswered_is_not_asked_again() -> None:
    state = ts.on_event(ts.TabletState(window=1), {"type": "rating_requested", "window": 1, "ticket": TICKET}, 10.0)
    state = ts.on_window(state, _view(TICKET), 11.0)
    assert state.screen == ts.RATING and state.since == 10.0          # the event opened it; the view changes nothing
    state, _ = ts.tick(state, 10.0 + ts.RATING_TIMEOUT + 1)
    assert state.screen == ts.IDLE
    assert ts.on_window(state, _view(TICKET, status="calling"), 400.0).screen == ts.IDLE


def test_no_pending_rating_or_another_window_or_a_rated_visit_keeps_it_idle() -> None:
    fresh = ts.TabletState(window=1)
    assert ts.on_window(fresh, _view(None), 1.0).screen == ts.IDLE
    assert ts.on_window(fresh, {**_view(TICKET), "number": 2}, 1.0).screen == ts.IDLE
    assert ts.on_window(fresh, _view({**TICKET, "rating": {"score": 5}}), 1.0).screen == ts.IDLE
    # a new visit's pending rating after an old one opens again
    other = {**TICKET, "id": "t-2", "number": "A008"}
    state = ts.on_window(ts.on_window(fresh, _view(TICKET), 1.0), _view(None), 2.0)
    state, _ = ts.tick(state, 1.0 + ts.RATING_TIMEOUT + 1)
    assert ts.on_window(state, _view(other), 300.0).request == other
