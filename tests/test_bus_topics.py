"""The topic contract (DESIGN §5) and the access rules both brokers enforce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hall_controller.bus.topics import HallTopics, TopicInfo, access_rules, pattern_covers

T = HallTopics("demo")
segments = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)


def test_builders_follow_the_contract():
    assert T.status == "hall/demo/status"
    assert T.cmd("window-3") == "hall/demo/cmd/window-3"
    assert T.reply("window-3") == "hall/demo/reply/window-3"
    assert T.event("ticket_called") == "hall/demo/event/ticket_called"
    assert T.state_queues == "hall/demo/state/queues"
    assert T.state_window(3) == "hall/demo/state/window/3"
    assert T.state_calls == "hall/demo/state/calls"
    assert T.device("led-3") == "hall/demo/device/led-3"
    assert T.kiosk_card("kiosk-1") == "hall/demo/kiosk/kiosk-1/card"
    assert T.client_status("tablet-3") == "hall/demo/client/tablet-3/status"
    assert (T.all_cmds, T.all_client_status) == ("hall/demo/cmd/+", "hall/demo/client/+/status")


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a b", "user:x", "-lead", "x" * 65, "窗口", None, 3])
def test_ids_that_would_break_topics_acl_or_password_files_are_refused(bad):
    with pytest.raises(ValueError):
        T.cmd(bad)
    with pytest.raises(ValueError):
        HallTopics(bad)


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2.0])
def test_window_numbers_are_positive_ints(bad):
    with pytest.raises(ValueError):
        T.state_window(bad)


@given(segments, st.integers(min_value=1, max_value=10_000))
def test_parse_inverts_every_builder(seg, n):
    assert T.parse(T.cmd(seg)) == TopicInfo("cmd", seg)
    assert T.parse(T.reply(seg)) == TopicInfo("reply", seg)
    assert T.parse(T.event(seg)) == TopicInfo("event", seg)
    assert T.parse(T.device(seg)) == TopicInfo("device", seg)
    assert T.parse(T.kiosk_card(seg)) == TopicInfo("kiosk_card", seg)
    assert T.parse(T.client_status(seg)) == TopicInfo("client_status", seg)
    assert T.parse(T.state_window(n)) == TopicInfo("state_window", n)


@pytest.mark.parametrize("topic", [
    "hall/other/status", "hall/demo", "hall/demo/", "hall/demo/cmd", "hall/demo/cmd/a/b", "hall/demo/cmd/bad id",
    "hall/demo/state/window/03", "hall/demo/state/window/x", "hall/demo/state/window/٣", "hall/demo/state/other",
    "hall/demo/kiosk/k1", "hall/demo/unknown/x", "hall/demox/status",
])
def test_parse_rejects_what_is_not_in_the_contract(topic):
    assert T.parse(topic) is None


def test_parse_fixed_topics():
    assert T.parse("hall/demo/status") == TopicInfo("status")
    assert T.parse("hall/demo/state/queues") == TopicInfo("state_queues")
    assert T.parse("hall/demo/state/calls") == TopicInfo("state_calls")


@pytest.mark.parametrize("pattern, topic_filter, covered", [
    ("hall/d/event/#", "hall/d/event/+", True),
    ("hall/d/event/#", "hall/d/event", True),
    ("hall/d/event/#", "hall/d/event/x/y", True),
    ("hall/d/event/+", "hall/d/event/#", False),
    ("hall/d/state/window/3", "hall/d/state/window/+", False),
    ("hall/d/state/window/+", "hall/d/state/window/3", True),
    ("hall/d/#", "hall/#", False),
    ("hall/d/status", "hall/d/status", True),
    ("hall/d/status", "hall/d/status/x", False),
])
def test_pattern_covers(pattern, topic_filter, covered):
    assert pattern_covers(pattern, topic_filter) is covered


def test_for_plain_topics_covering_is_mqtt_matching():
    assert pattern_covers("hall/+/status", "hall/demo/status")
    assert pattern_covers("hall/#", "hall/demo/cmd/x")
    assert not pattern_covers("hall/+", "hall/demo/status")


def test_every_client_writes_only_its_own_cmd_and_status_and_reads_its_own_reply():
    for role, window in [("kiosk", None), ("window", 3), ("tablet", 3), ("display", None), ("admin", None)]:
        rules = access_rules(T, "me", role, window)
        assert rules.may_write("hall/demo/cmd/me") and rules.may_write("hall/demo/client/me/status")
        assert not rules.may_write("hall/demo/cmd/other")
        assert not rules.may_write("hall/demo/event/ticket_called")
        assert not rules.may_write("hall/demo/status")
        assert rules.may_read("hall/demo/reply/me") and not rules.may_read("hall/demo/reply/other")
        assert rules.may_read("hall/demo/status")
        assert rules.may_read("hall/demo/event/+") == (role != "kiosk")
        assert not rules.may_read("hall/demo/cmd/+")
        assert not rules.may_read("hall/demo/#")


def test_role_specific_reads():
    kiosk = access_rules(T, "kiosk-1", "kiosk")
    assert kiosk.may_read("hall/demo/kiosk/kiosk-1/card") and not kiosk.may_read("hall/demo/kiosk/kiosk-2/card")
    tablet = access_rules(T, "tablet-3", "tablet", 3)
    assert tablet.may_read("hall/demo/state/window/3")
    assert not tablet.may_read("hall/demo/state/window/4") and not tablet.may_read("hall/demo/state/queues")
    display = access_rules(T, "display-1", "display")
    assert display.may_read("hall/demo/state/#") and not display.may_read("hall/demo/device/+")
    admin = access_rules(T, "admin", "admin")
    assert admin.may_read("hall/demo/client/+/status") and admin.may_read("hall/demo/device/+")
    daemon = access_rules(T, "hall-daemon", "daemon")
    assert daemon.may_read("hall/demo/#") and daemon.may_write("hall/demo/reply/window-3")
    assert not daemon.may_write("hall/other/status")


def test_access_rules_refuse_unknown_roles_and_tablets_without_window():
    with pytest.raises(ValueError):
        access_rules(T, "x", "superuser")
    with pytest.raises(ValueError):
        access_rules(T, "tablet-9", "tablet")


def test_a_public_kiosk_reads_queue_counts_and_its_own_card_only():
    rules = access_rules(T, "kiosk-1", "kiosk")
    assert rules.may_read("hall/demo/state/queues") and rules.may_read("hall/demo/kiosk/kiosk-1/card")
    assert rules.may_read("hall/demo/device/printer-1")
    for topic in ("hall/demo/event/ticket_called", "hall/demo/state/window/3", "hall/demo/state/calls",
                  "hall/demo/kiosk/kiosk-2/card", "hall/demo/client/window-3/status"):
        assert not rules.may_read(topic), topic
