"""Secrets out of every log line, reply, event and error message: the one place that knows what a secret is.

Two layers, because either alone leaks. Call sites log op names and non-secret arguments only
(`redact_args`, `redact_url`). Under them, `RedactingFilter` (installed on the output handler by
`hall_controller.logsetup.setup_logging`, which every program of the hall calls: the daemon, its broker
child, hallctl, the emulators and the four Qt apps) rewrites each record before it is written, so that a
call site someone adds later, a library's DEBUG line or a traceback cannot write a secret either:

- the value of a secret key (`pin`, `password`, `token`, `visit_token`, `secret`, `authorization`,
  `id_number` …) in a dict repr, JSON (also escaped inside another JSON string), `key=value` text or a
  query string;
- the password of any `scheme://user:PASSWORD@host` URL (an `mqtt://` URL on a command line or in a
  config error), and `Bearer …` / `Basic …` credentials;
- any value registered at run time with `register_secret` (this process's MQTT password, the
  upstream token, the hall secret in hex) wherever it appears.

Each becomes `***`. A new kind of secret (a visit token of the visitor's phone page, say) is covered by
sending it under a key named `token` or `*_token`, or by registering its value.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Keys whose values are secrets wherever they appear (compared lower-case; `*_token`, `*_password`
# and `*_secret` count too).
SECRET_KEYS = frozenset({
    "pin", "password", "passwd", "pwd", "pass", "token", "secret", "authorization", "api_key", "apikey",
    "id_number", "credentials", "密码", "口令", "令牌", "pin_hash",   # a PIN's hash: 4-8 digits, brute-forced
})
_SECRET_SUFFIXES = ("_token", "_password", "_secret", "_pin")
# Registered values shorter than this are not replaced in free text (a 3-letter test token would
# mask every "token" in the log); call sites and the key rules still cover them.
MIN_REGISTERED = 8

_KEY_WORDS = (r"(?:[a-z]+_)?(?:pin(?:_hash)?|password|passwd|pwd|token|secret|authorization|api_?key|id_number)"
              r"|密码|口令|令牌")
# key, optional quotes (possibly backslash-escaped), a separator, then the value up to a delimiter. The
# value's closing quote is left alone, so the line stays well-formed.
_KEY_VALUE = re.compile(
    r"(?P<pre>(?<![A-Za-z0-9_])(?P<q>\\*[\"']?)(?:" + _KEY_WORDS + r")(?P=q)\s*[:=：]\s*"
    r"(?:b?\\*[\"'])?)(?P<value>[^\"'\\\s,;&}\])]+)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:'\"]*:)(?P<pw>[^\s@/'\"]+)(?=@)")
_AUTH_SCHEME = re.compile(r"(?P<pre>\b(?:Bearer|Basic|Token)\s+)(?P<cred>[A-Za-z0-9._~+/=\-]{4,})")

_registered: set[str] = set()
_registered_lock = threading.Lock()
_registered_pattern: re.Pattern[str] | None = None


def is_secret_key(key: object) -> bool:
    """True for a dict key or argument name whose value must never be logged or shown."""
    if not isinstance(key, str):
        return False
    k = key.lower()
    return k in SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def register_secret(value: str | bytes | None) -> None:
    """Mask `value` wherever it appears in this process's log from now on (bytes: as hex too)."""
    global _registered_pattern
    forms: list[str] = []
    if isinstance(value, bytes):
        forms += [value.hex(), value.hex().upper(), repr(value)[2:-1]]
    elif isinstance(value, str):
        forms.append(value)
    forms = [f for f in forms if len(f) >= MIN_REGISTERED]
    if not forms:
        return
    with _registered_lock:
        if all(f in _registered for f in forms):
            return
        _registered.update(forms)
        # longest first, so a secret that contains another is masked whole
        _registered_pattern = re.compile("|".join(re.escape(f) for f in sorted(_registered, key=len, reverse=True)))


def redact_text(text: str) -> str:
    """`text` with every secret it holds replaced by `***` (see the module docstring)."""
    if not text:
        return text
    pattern = _registered_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: m.group("pre") + MASK, text)
    return _KEY_VALUE.sub(lambda m: m.group("pre") + MASK, text)


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced: `mqtt://kiosk-1:***@host:1883`."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return redact_text(url)
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[1]}"))
    except ValueError:
        return redact_text(url)


def redact_args(value: Any) -> Any:
    """A copy of `value` (dicts and lists, recursively) with the values of secret keys masked: what a
    call site may log of a command's arguments."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) else redact_args(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_args(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message, traceback and stack with `redact_text`.

    Put it on handlers (a filter on a logger does not see records of its children)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:   # a broken format: the handler reports it as usual
            return True
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
