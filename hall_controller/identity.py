"""Resident ID numbers (GB 11643-1999): validation, age, masking and keyed hashing.

The clear number never leaves this module's callers inside the daemon: the store keeps only
`id_hash` (HMAC with the hall secret, so equal people match without storing the number) and the
masked form `310101********1234`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class InvalidIdNumber(ValueError):
    """The reason is user-facing Chinese text, safe to show at the kiosk."""


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


def parse_id_number(number: str, *, today: date | None = None) -> IdNumber:
    """Validate an 18-digit ID number (region, birth date, check digit)."""
    if not isinstance(number, str):
        raise InvalidIdNumber("身份证号码格式错误")
    number = number.strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise InvalidIdNumber("身份证号码应为18位（最后一位可为X）")
    if number[:2] in ("00", "10", "20", "30", "40", "50", "60", "70", "80", "90") or number[0] in "09":
        raise InvalidIdNumber("身份证号码地区码无效")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise InvalidIdNumber("身份证号码出生日期无效") from exc
    if birth.year < 1880 or (today is not None and birth > today):
        raise InvalidIdNumber("身份证号码出生日期无效")
    if check_digit(number[:17]) != number[17]:
        raise InvalidIdNumber("身份证号码校验位错误")
    return IdNumber(birth, "男" if int(number[16]) % 2 else "女", number[:6])


def mask_id_number(number: str) -> str:
    number = number.strip().upper()
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: public screens show only the family name's first character."""
    name = (name or "").strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


def id_hash(number: str, secret: bytes) -> str:
    return hmac.new(secret, number.strip().upper().encode(), hashlib.sha256).hexdigest()


def age_band(age: int) -> str:
    """Coarse band for upstream statistics (no exact age leaves the hall)."""
    for lower, upper in ((0, 18), (18, 30), (30, 45), (45, 60), (60, 70), (70, 80)):
        if lower <= age < upper:
            return f"{lower}-{upper - 1}"
    return "80+"
