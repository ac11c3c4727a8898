"""Visit tokens: the key a visitor's phone holds to one ticket (DESIGN §10).

`issue_ticket` and `reprint` draw a new token (128 random bits, URL-safe base64, 22 characters) and
print it in the ticket's QR code as `{web.public_url}/t/{token}`. The hall keeps only its sha256
(`Ticket.visit_token_hash`), so neither the database nor a backup can open a phone page. A token
reads one ticket and works until 30 minutes after the visit closes or until the day resets; a
reprint replaces it. Every token that does not open a ticket — unknown, malformed, replaced, expired
— gets the same answer (`not_found`, NOT_FOUND_TEXT), so a guesser learns nothing from the reply.
Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

TOKEN_BYTES = 16                       # 128 bits
TOKEN_TTL = timedelta(minutes=30)      # after the visit closes
NOT_FOUND_TEXT = "号码已失效或不存在"
LEAVE_REFUSED_TEXT = "已叫号，无法取消排队"
# token_urlsafe(16): 16 bytes in unpadded URL-safe base64 are 22 characters, the last of which
# carries only 2 bits (one of AQgw); anything else was never issued
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")


def new_token() -> str:
    """A fresh visit token (the clear value goes to the kiosk's reply and the printer only)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the hall stores and looks a token up by: sha256 hex (64 characters)."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def lookup_key(value: object) -> str | None:
    """The hash to look `value` up by, or None when it cannot be a token (never issued: no lookup)."""
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        return None
    return token_hash(value)
