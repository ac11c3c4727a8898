"""Command size by role: what each client may send, and the broker limit that follows from it.

Only a window's ``attach_scan`` carries megabytes (a document scan up to ``scans.max_mb``, base64 in
JSON: :func:`hall_controller.scans.command_payload_limit`, 13.4 MB for the default 10 MB). Every
other command of every role is small. The largest is a supervisor's ``resolve_bad_rating`` with its
note of at most 1000 characters: under 3.1 KB as HallClient sends it (UTF-8) and 6.1 KB even with
every character ``\\u``-escaped; free-text notes of ``finish``/``transfer`` are a line or two.
:data:`SMALL_COMMAND_BYTES` (16 KiB) leaves over twice the largest, while a kiosk, tablet, display
or a window's other commands can no longer make the daemon copy and parse megabytes.

Where each limit is kept:

* The bridge refuses a command over its role's limit *before parsing it*: the op is read from the
  payload's start (HallClient sends ``{"id": …, "op": …`` first; a large command whose op is not
  there is refused), and the reply is ``bad_request`` with ``reason: too_large`` and a Chinese
  message; the log names client, op and size, never the payload.
* Mosquitto 2.0 has no per-user packet limit, so its broker-wide ``max_packet_size`` is the largest a
  role may send (a window's scan command) plus the MQTT header (:func:`broker_packet_limit`); a
  client sending more is disconnected and nothing reaches the daemon. The embedded broker (amqtt has
  no limit of its own) applies the same limit in its connection gate, which counts the length of
  every packet before amqtt reads its body.
"""

from __future__ import annotations

import re

from ..scans import command_payload_limit
from .topics import ROLES

__all__ = ["LARGE_OPS", "MQTT_OVERHEAD", "SMALL_COMMAND_BYTES", "broker_packet_limit", "command_limit",
           "leading_op"]

SMALL_COMMAND_BYTES = 16 * 1024
#: the ops a role may send above SMALL_COMMAND_BYTES (up to the scan command limit), only from a window
LARGE_OPS: dict[str, frozenset[str]] = {"window": frozenset({"attach_scan"})}
#: an MQTT PUBLISH around a command: fixed header (5), topic hall/{64}/cmd/{64} (2 + 138), packet id (2)
MQTT_OVERHEAD = 1024

_LEADING_OP = re.compile(rb'\{\s*(?:"id"\s*:\s*"[^"\\]{0,64}"\s*,\s*)?"op"\s*:\s*"([a-z][a-z0-9_]{0,63})"')


def leading_op(payload: bytes) -> str | None:
    """The op of a command that names it first (``{"op": …`` or ``{"id": …, "op": …``), read without
    parsing the rest; None otherwise. Keys are unique in a command, so this is the op it runs."""
    match = _LEADING_OP.match(payload, 0, 256)
    return match.group(1).decode("ascii") if match else None


def command_limit(role: str, op: str | None, window: int | None, large: int) -> int:
    """The largest command ``role`` may send for ``op``: ``large`` (the scan command limit) for a
    window terminal's attach_scan, else :data:`SMALL_COMMAND_BYTES` (never above ``large``)."""
    if op is not None and op in LARGE_OPS.get(role, ()) and window is not None:
        return large
    return min(SMALL_COMMAND_BYTES, large)


def broker_packet_limit(scan_max_bytes: int) -> int:
    """The broker's packet limit: the largest command any role may send, plus the MQTT header."""
    large = command_payload_limit(scan_max_bytes)
    return max(max(command_limit(role, op, 1, large) for op in (None, *LARGE_OPS.get(role, ())))
               for role in ROLES) + MQTT_OVERHEAD
