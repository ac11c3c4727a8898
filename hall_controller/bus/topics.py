"""The MQTT topic contract of DESIGN §5: builders, parser, and who may use which topic.

Both brokers (the Mosquitto ACL file and the embedded broker's topic check) and the clients (what
they subscribe to) derive from `access_rules`, so the contract lives in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One topic level: no '/', no wildcards, no ':' (Mosquitto's password file separator), no spaces.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

ROLES = ("kiosk", "window", "tablet", "display", "admin", "web", "daemon")
WINDOW_ROLES = frozenset({"window", "tablet"})


def is_segment(value: object) -> bool:
    """True if `value` can be used as one topic level (client id, hall id, device id, event type)."""
    return isinstance(value, str) and _SEGMENT_RE.fullmatch(value) is not None


def check_segment(value: object, what: str) -> str:
    """Return `value` or raise ValueError: ids end up in topics, ACL and password files."""
    if not is_segment(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . _ -)")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class TopicInfo:
    """A parsed topic. `kind`: status, cmd, reply, event, state_queues, state_window, state_calls, device,
    kiosk_card or client_status; `key`: the client id, event type, window number, device or kiosk id."""

    kind: str
    key: str | int | None = None


class HallTopics:
    """Topic names under `hall/{hall_id}`."""

    def __init__(self, hall_id: str) -> None:
        self.hall_id = check_segment(hall_id, "hall id")
        self.root = f"hall/{hall_id}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    def cmd(self, client_id: str) -> str:
        return f"{self.root}/cmd/{check_segment(client_id, 'client id')}"

    def reply(self, client_id: str) -> str:
        return f"{self.root}/reply/{check_segment(client_id, 'client id')}"

    def event(self, event_type: str) -> str:
        return f"{self.root}/event/{check_segment(event_type, 'event type')}"

    @property
    def state_queues(self) -> str:
        return f"{self.root}/state/queues"

    def state_window(self, number: int) -> str:
        return f"{self.root}/state/window/{_window_number(number)}"

    @property
    def state_calls(self) -> str:
        return f"{self.root}/state/calls"

    def device(self, device_id: str) -> str:
        return f"{self.root}/device/{check_segment(device_id, 'device id')}"

    def kiosk_card(self, kiosk_id: str) -> str:
        return f"{self.root}/kiosk/{check_segment(kiosk_id, 'kiosk id')}/card"

    def client_status(self, client_id: str) -> str:
        return f"{self.root}/client/{check_segment(client_id, 'client id')}/status"

    # What the daemon subscribes to (clients subscribe to their read patterns, see access_rules).
    @property
    def all_cmds(self) -> str:
        return f"{self.root}/cmd/+"

    @property
    def all_client_status(self) -> str:
        return f"{self.root}/client/+/status"

    def parse(self, topic: str) -> TopicInfo | None:
        """Classify a topic of this hall; None for anything outside the contract."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix):].split("/")
        match parts:
            case ["status"]:
                return TopicInfo("status")
            case ["cmd", client_id] if is_segment(client_id):
                return TopicInfo("cmd", client_id)
            case ["reply", client_id] if is_segment(client_id):
                return TopicInfo("reply", client_id)
            case ["event", event_type] if is_segment(event_type):
                return TopicInfo("event", event_type)
            case ["state", "queues"]:
                return TopicInfo("state_queues")
            case ["state", "calls"]:
                return TopicInfo("state_calls")
            case ["state", "window", number] if number.isascii() and number.isdigit() and number[0] != "0":
                return TopicInfo("state_window", int(number))
            case ["device", device_id] if is_segment(device_id):
                return TopicInfo("device", device_id)
            case ["kiosk", kiosk_id, "card"] if is_segment(kiosk_id):
                return TopicInfo("kiosk_card", kiosk_id)
            case ["client", client_id, "status"] if is_segment(client_id):
                return TopicInfo("client_status", client_id)
        return None


def _window_number(number: object) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"invalid window number {number!r}: a positive integer")
    return number


@dataclass(frozen=True)
class AccessRules:
    """Topic patterns (MQTT filters) a client may read (subscribe/receive) and write (publish)."""

    read: tuple[str, ...]
    write: tuple[str, ...]

    def may_read(self, topic_filter: str) -> bool:
        return any(pattern_covers(p, topic_filter) for p in self.read)

    def may_write(self, topic: str) -> bool:
        return any(pattern_covers(p, topic) for p in self.write)


def access_rules(topics: HallTopics, client_id: str, role: str, window: int | None = None) -> AccessRules:
    """Least privilege per role; every client writes only its own cmd and status and reads its own reply."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if role == "daemon":
        everything = (f"{topics.root}/#",)
        return AccessRules(read=everything, write=everything)
    own_write = (topics.cmd(client_id), topics.client_status(client_id))
    read = [topics.reply(client_id), topics.status]
    if role == "kiosk":
        # A public machine: waiting counts, devices and its own card reads; no events (they carry
        # tickets of every window), which also spares the broker copying every event to each kiosk.
        read += [topics.state_queues, f"{topics.root}/device/#", topics.kiosk_card(client_id)]
        return AccessRules(read=tuple(read), write=own_write)
    if role == "web":
        # hall-web, the visitors' phone pages (DESIGN §10): the public hall state and the events that
        # move a ticket; no devices, no kiosk card reads, no other client's reply or status. It runs
        # only the token ops (service.WEB_OPS), the daemon refuses the rest.
        read += [topics.state_queues, topics.state_calls, f"{topics.root}/state/window/+",
                 f"{topics.root}/event/#"]
        return AccessRules(read=tuple(read), write=own_write)
    read.append(f"{topics.root}/event/#")
    if role == "window":
        read += [f"{topics.root}/state/#", f"{topics.root}/device/#"]
    elif role == "tablet":
        if window is None:
            raise ValueError(f"role tablet needs a window ({client_id})")
        read += [topics.state_window(window)]
    elif role == "display":
        read += [f"{topics.root}/state/#"]
    elif role == "admin":
        read += [f"{topics.root}/state/#", f"{topics.root}/device/#", topics.all_client_status]
    return AccessRules(read=tuple(read), write=own_write)


# Event types each role's app acts on. Events go out on one topic per type, so a client that listens
# only to these keeps the busy ones (ticket_issued, service_started, …) off its connection: every
# event costs the broker a copy per subscriber, and the hall has a kiosk and a window per counter.
ROLE_EVENTS: dict[str, tuple[str, ...]] = {
    # the hall display calls numbers and flashes them while the voice speaks; window states and
    # recent calls come from retained state
    "display": ("ticket_called", "ticket_recalled", "announcement_started", "announcement_finished", "day_reset"),
    # a window terminal: tickets sent to it, its time limits, its ratings
    "window": ("ticket_transferred", "ticket_reinstated", "time_limit_warning", "time_limit_exceeded",
               "rating_received", "day_reset"),
    # the rating tablet: asked to rate, rated
    "tablet": ("rating_requested", "rating_received", "day_reset"),
    # hall-web: every event that moves a ticket a phone page may show (its ticket_status is asked again)
    "web": ("ticket_issued", "ticket_called", "ticket_recalled", "service_started", "service_finished",
            "ticket_skipped", "ticket_reinstated", "ticket_transferred", "ticket_left", "ticket_cancelled",
            "ticket_reprinted", "rating_requested", "rating_received", "visit_closed", "day_reset"),
}
ALL_EVENTS = "all"


def subscriptions(topics: HallTopics, client_id: str, role: str, window: int | None = None,
                  events: str | tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
    """The topic filters a client of `role` subscribes to: what its app needs, within `access_rules`.

    `events`: None for the role's ROLE_EVENTS, ALL_EVENTS for every event (a supervisor, a test
    observer), or a list of event types. A kiosk reads no events at all; an admin reads everything.
    """
    rules = access_rules(topics, client_id, role, window)
    if role in ("kiosk", "admin"):
        return rules.read
    event_prefix = f"{topics.root}/event/"
    if events == ALL_EVENTS:
        event_filters: list[str] = [event_prefix + "#"]
    else:
        types = ROLE_EVENTS.get(role, ()) if events is None else tuple(events)
        event_filters = [topics.event(t) for t in types]
    wanted = [topics.reply(client_id), topics.status, *event_filters]
    if role == "window":
        wanted += [topics.state_queues, f"{topics.root}/device/#"]
        # its own window; a window terminal not bound to a number (a supervisor's) sees them all
        wanted.append(topics.state_window(window) if window is not None else f"{topics.root}/state/window/+")
    else:
        wanted += [f for f in rules.read if f not in wanted and not f.startswith(event_prefix)]
    return tuple(f for f in wanted if rules.may_read(f))


def pattern_covers(pattern: str, topic_filter: str) -> bool:
    """True if every topic `topic_filter` can match (or the topic itself) is matched by `pattern`.

    Wildcards in the filter are taken literally, so `hall/h/event/#` covers `hall/h/event/+` but
    `hall/h/state/window/3` does not cover `hall/h/state/window/+`. For a plain topic this is
    ordinary MQTT matching.
    """
    pat = pattern.split("/")
    sub = topic_filter.split("/")
    for i, level in enumerate(pat):
        if level == "#":
            return True
        if i >= len(sub):
            return False
        if level != "+" and level != sub[i]:
            return False
        if level == "+" and sub[i] == "#":
            return False
    return len(pat) == len(sub)

