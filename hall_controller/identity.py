"""Resident ID numbers (GB 11643-1999) and cards: validation, age, validity, masking and keyed hashing.

The clear number never leaves this module's callers inside the daemon: the store keeps only
`id_hash` (HMAC with the hall secret, so equal people match without storing the number) and the
masked form `310101********1234`.

15-digit numbers (first-generation cards, GB 11643-1989) are *converted*, not rejected: a booking
made by phone or letter may still carry one, and converting it the way the standard prescribes
(insert the century ``19`` after the region code, append the check digit) gives the holder's
18-digit number, so the keyed hash of the booking matches the card read at the kiosk. A 15-digit
number has no check digit, so only its region and birth date can be checked. A card reader never
delivers one (second-generation cards carry 18 digits).

Lower-case ``x`` is accepted as the check character ``X`` (people type it); the canonical form is
upper case and it is what is hashed and masked.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


LONG_TERM = "长期"


class InvalidCard(ValueError):
    """A card that cannot be used; the reason is user-facing Chinese text, safe to show at the kiosk."""


class InvalidIdNumber(InvalidCard):
    """The ID number itself is wrong (format, region, birth date or check digit)."""


@dataclass(frozen=True)
class IdNumber:
    birth_date: date
    sex: str  # "男" / "女"
    region: str

    def age_on(self, day: date) -> int:
        return age_on(self.birth_date, day)


def age_on(birth: date, day: date) -> int:
    """Completed years on `day` (the elderly priority and the upstream age band both use this)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_digit(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalize_id_number(number: str) -> str:
    """The canonical 18-character form: stripped, ``x`` → ``X``, a 15-digit number converted.

    Raises :class:`InvalidIdNumber` for anything that is neither 15 digits nor 17 digits plus a
    check character (a converted number gets its check digit computed, so it always matches).
    """
    if not isinstance(number, str):
        raise InvalidIdNumber("身份证号码格式错误")
    number = number.strip().upper()
    if len(number) == 15 and number.isdigit():
        first17 = number[:6] + "19" + number[6:]
        return first17 + check_digit(first17)
    if len(number) != 18 or not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise InvalidIdNumber("身份证号码应为18位（最后一位可为X）")
    return number


def parse_id_number(number: str, *, today: date | None = None) -> IdNumber:
    """Validate an ID number (region, birth date, check digit); 15-digit ones are converted first.

    ``today`` (from the injected clock) also rejects birth dates in the future.
    """
    legacy = isinstance(number, str) and len(number.strip()) == 15
    number = normalize_id_number(number)
    if number[:2] in ("00", "10", "20", "30", "40", "50", "60", "70", "80", "90") or number[0] in "09":
        raise InvalidIdNumber("身份证号码地区码无效")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise InvalidIdNumber("身份证号码出生日期无效") from exc
    if birth.year < 1880 or (today is not None and birth > today):
        raise InvalidIdNumber("身份证号码出生日期无效")
    if not legacy and check_digit(number[:17]) != number[17]:
        raise InvalidIdNumber("身份证号码校验位错误")
    return IdNumber(birth, "男" if int(number[16]) % 2 else "女", number[:6])


def parse_card_date(text: str) -> date:
    """``YYYYMMDD`` as printed on the card; InvalidCard otherwise."""
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except (TypeError, ValueError) as exc:
        raise InvalidCard("身份证有效期无效") from exc


def check_validity(valid_from: str | None, valid_to: str | None, today: date) -> None:
    """Raise :class:`InvalidCard` unless ``today`` lies in the card's validity period.

    The card is valid through ``valid_to`` inclusive; ``长期`` never expires. Missing dates (a card
    object built without them) are not checked.
    """
    if valid_from and parse_card_date(valid_from) > today:
        raise InvalidCard("身份证尚未生效")
    if valid_to and valid_to != LONG_TERM and parse_card_date(valid_to) < today:
        raise InvalidCard("身份证有效期已过")


def _canonical(number: str) -> str:
    try:
        return normalize_id_number(number)
    except InvalidIdNumber:
        return str(number).strip().upper()


def mask_id_number(number: str) -> str:
    number = _canonical(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: public screens show only the family name's first character."""
    name = (name or "").strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


def id_hash(number: str, secret: bytes) -> str:
    """Keyed hash of the canonical form: a 15-digit booking and the holder's card hash alike."""
    return hmac.new(secret, _canonical(number).encode(), hashlib.sha256).hexdigest()


def age_band(age: int) -> str:
    """Coarse band for upstream statistics (no exact age leaves the hall)."""
    for lower, upper in ((0, 18), (18, 30), (30, 45), (45, 60), (60, 70), (70, 80)):
        if lower <= age < upper:
            return f"{lower}-{upper - 1}"
    return "80+"
