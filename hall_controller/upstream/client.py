"""HTTP client for the management system (DESIGN §7).

One request per call, each bounded by a socket timeout, and every outcome folded into a
`DeliveryResult` so the forwarder can decide: delivered, retry later, or dead-letter. Retrying is
deliberately not done here; the forwarder owns the schedule.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from hall_controller import __version__
from hall_controller.redact import redact_text, redact_url, register_secret

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "unauthorized", "dead"]
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

# Statuses outside 5xx that still mean "try again later" rather than "this request is wrong".
_RETRYABLE_4XX = frozenset({408, 429})
# Statuses that refuse the hall's credentials (bearer token, or a proxy's), not the record.
_CREDENTIAL_4XX = frozenset({401, 403, 407})


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one request: `outcome`, the HTTP `status` (None without a response), a short
    `message` for logs and the outbox, and the decoded JSON response `data` when there was one."""

    outcome: Outcome
    status: int | None
    message: str
    data: Any = None
    date: str | None = None     # the response's `Date` header (`hallctl doctor` compares clocks with it)

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


class UpstreamError(Exception):
    """A read call (appointments) that did not succeed; `result` says whether retrying may help."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(f"{result.outcome}: {result.status} {result.message}")
        self.result = result


def classify_status(status: int) -> Outcome:
    """2xx and 409 (already received) are delivered; 5xx, 408 and 429 are retried; 401, 403 and 407
    refuse the credentials, which an operator fixes without touching the record ("unauthorized");
    other statuses (400, 422 …, and redirects this client does not follow) can never succeed
    unchanged, so they are dead."""
    if 200 <= status < 300 or status == 409:
        return "delivered"
    if status >= 500 or status in _RETRYABLE_4XX:
        return "retry"
    if status in _CREDENTIAL_4XX:
        return "unauthorized"
    return "dead"


class UpstreamClient:
    """Client for `{base_url}/api/v1/...` with bearer-token auth."""

    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://HOST[:PORT][/PATH], got {redact_url(base_url)!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        register_secret(token)     # never in the log, whatever logs it
        self.timeout = timeout

    def post_service_record(self, key: str, body: dict[str, Any]) -> DeliveryResult:
        """Send one service record; the upstream dedupes by `Idempotency-Key`."""
        return self._request("POST", "/api/v1/service-records", _json_bytes(body),
                             {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key})

    def put_scan(self, sha256: str, data: bytes, content_type: str) -> DeliveryResult:
        """Upload a scan's bytes under its content hash (idempotent by nature)."""
        return self._request("PUT", f"/api/v1/scans/{quote(sha256, safe='')}", data,
                             {"Content-Type": content_type or "application/octet-stream"})

    def post_monthly_report(self, body: dict[str, Any]) -> DeliveryResult:
        """Send a 月报表; the upstream dedupes by hall and month (409 on repeat)."""
        return self._request("POST", "/api/v1/monthly-reports", _json_bytes(body),
                             {"Content-Type": "application/json; charset=utf-8"})

    def get_appointments(self, hall_code: str, day: date | str) -> list[dict[str, Any]]:
        """Online (12348) bookings for a hall and day; raises `UpstreamError` unless the upstream
        answered 2xx with `{"appointments": [...]}`."""
        result = self.appointments_result(hall_code, day)
        if result.status is None or not 200 <= result.status < 300:
            raise UpstreamError(result)
        data = result.data
        if not isinstance(data, dict) or not isinstance(data.get("appointments"), list):
            raise UpstreamError(DeliveryResult("dead", result.status, "unexpected appointments response"))
        return [a for a in data["appointments"] if isinstance(a, dict)]

    def appointments_result(self, hall_code: str, day: date | str) -> DeliveryResult:
        """The appointments request as a result, never raised: `hallctl doctor` reads reachability, the
        token's acceptance (401/403) and the upstream's clock (`date`) from one authenticated GET."""
        query = urlencode({"hall": hall_code, "date": day.isoformat() if isinstance(day, date) else day})
        return self._request("GET", f"/api/v1/appointments?{query}", None, {})

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> DeliveryResult:
        all_headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": f"hall-controller/{__version__}",
            **headers,
        }
        conn = self._connection()
        try:
            conn.request(method, self._prefix + path, body=body, headers=all_headers)
            response = conn.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            # Refused, reset, timed out, DNS, TLS, malformed response: all transient from our side.
            message = self._clean(f"{type(exc).__name__}: {exc}".rstrip(": "))
            logger.debug("%s %s failed: %s", method, path, message)
            return DeliveryResult("retry", None, message)
        except ValueError:
            # http.client refuses to send it: a control character in a header or the path. Never sendable;
            # its message quotes the header, which may be the Authorization header: not repeated here.
            return DeliveryResult("dead", None, "invalid request: a header or the path holds a character HTTP "
                                  "cannot send (check upstream.url and upstream.token)")
        finally:
            conn.close()
        data, message = _decode(raw, response.reason)
        message = self._clean(message)            # an upstream may quote the credentials it refused
        outcome = classify_status(response.status)
        logger.debug("%s %s -> %s %s (%s)", method, path, response.status, message, outcome)
        return DeliveryResult(outcome, response.status, message, data, response.getheader("Date"))


    def _clean(self, message: str) -> str:
        """`message` without the token: results end up in the log, the outbox and supervisor events."""
        if self._token:   # as a whole word: a short test token must not eat into "token"
            edge = r"[A-Za-z0-9._~+/=\-]"
            message = re.sub(f"(?<!{edge}){re.escape(self._token)}(?!{edge})", "***", message)
        return redact_text(message)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _decode(raw: bytes, reason: str) -> tuple[Any, str]:
    """Parse a JSON response if possible; the message is its `message` field, else the reason."""
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, (raw[:200].decode("utf-8", "replace").strip() or reason)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data, data["message"]
    return data, reason
