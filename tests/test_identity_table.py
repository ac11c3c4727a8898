"""Table of ID numbers (GB 11643-1999) and card validity periods.

Check digits are worked by hand: S = Σ digit·weight with weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2,
check = "10X98765432"[S mod 11]. 15-digit legacy numbers are converted to 18 digits (see
hall_controller.identity's docstring and the README): 19 is inserted after the region code and the
check digit appended.
"""

from __future__ import annotations

from datetime import date

import pytest

from hall_controller.identity import (
    InvalidCard,
    InvalidIdNumber,
    check_validity,
    id_hash,
    mask_id_number,
    normalize_id_number,
    parse_id_number,
)

TODAY = date(2026, 11, 23)

VALID = [
    # number, birth, sex, canonical form
    # S = 3·7+1·9+0+1·5+0+1·4+1·2+9·1+4·6+8·3+0+3·9+1·10+5·5+0+0+2·2 = 164, 164 mod 11 = 10 -> "2"
    ("310101194803150022", date(1948, 3, 15), "女", "310101194803150022"),
    # S = 176, mod 11 = 0 -> "1"
    ("440304199001010011", date(1990, 1, 1), "男", "440304199001010011"),
    # S = 189, mod 11 = 2 -> "X"; a leap day
    ("11010119800229123X", date(1980, 2, 29), "男", "11010119800229123X"),
    # lower-case x is the same number
    ("11010119800229123x", date(1980, 2, 29), "男", "11010119800229123X"),
    # S = 347, mod 11 = 6 -> "6"
    ("510107199912319876", date(1999, 12, 31), "男", "510107199912319876"),
    # S = 90, mod 11 = 2 -> "X"; born 2000
    ("32050220000101000X", date(2000, 1, 1), "女", "32050220000101000X"),
    # surrounding blanks from a form field
    (" 440304199001010011 ", date(1990, 1, 1), "男", "440304199001010011"),
    # 15-digit legacy numbers: 310101 48 0315 002 -> 310101 19480315 002 + check "2"
    ("310101480315002", date(1948, 3, 15), "女", "310101194803150022"),
    # 110105 491231 002 -> 11010519491231002 + "X" (the standard's own example)
    ("110105491231002", date(1949, 12, 31), "女", "11010519491231002X"),
]

INVALID = [
    # number, reason (Chinese, shown at the kiosk)
    ("310101194803150021", "校验位错误"),      # check digit should be 2
    ("310101194803150023", "校验位错误"),
    ("440304199001010012", "校验位错误"),
    ("11010119800229123Y", "18位"),            # not a check character
    ("110101198002291231", "校验位错误"),      # X expected, 1 given
    ("110101198102291236", "出生日期无效"),    # 29 Feb 1981 does not exist
    ("110101199002301234", "出生日期无效"),    # 30 February
    ("110101199013011234", "出生日期无效"),    # month 13
    ("110101199000101234", "出生日期无效"),    # month 0
    ("110101199001321234", "出生日期无效"),    # day 32
    ("110101203001011234", "出生日期无效"),    # born in 2030: after TODAY
    ("310101802315002", "出生日期无效"),       # legacy number, month 23
    ("1101011980022912", "18位"),              # 16 digits
    ("11010119800229123XX", "18位"),           # 19 characters
    ("31010148031500X", "18位"),               # a legacy number has no check character
    ("", "18位"),
    ("000101199001011234", "地区码无效"),
]


@pytest.mark.parametrize(("number", "birth", "sex", "canonical"), VALID)
def test_valid_numbers(number: str, birth: date, sex: str, canonical: str) -> None:
    info = parse_id_number(number, today=TODAY)
    assert (info.birth_date, info.sex) == (birth, sex)
    assert normalize_id_number(number) == canonical


@pytest.mark.parametrize(("number", "reason"), INVALID)
def test_invalid_numbers(number: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as err:
        parse_id_number(number, today=TODAY)
    assert reason in str(err.value)


def test_future_birth_is_only_checked_against_a_given_day() -> None:
    first17 = "11010120261124123"          # born the day after TODAY
    number = first17 + "10X98765432"[sum(int(d) * w for d, w in zip(
        first17, (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11]
    with pytest.raises(InvalidIdNumber, match="出生日期无效"):
        parse_id_number(number, today=TODAY)
    assert parse_id_number(number, today=date(2026, 11, 24)).birth_date == date(2026, 11, 24)


def test_legacy_number_hashes_and_masks_like_its_18_digit_form() -> None:
    assert id_hash("110105491231002", b"k") == id_hash("11010519491231002X", b"k") \
        == id_hash("11010519491231002x", b"k")
    assert mask_id_number("110105491231002") == "110105********002X"


@pytest.mark.parametrize(("valid_from", "valid_to", "reason"), [
    ("20161123", "20261123", None),          # last valid day
    ("20161122", "20261122", "有效期已过"),  # expired yesterday
    ("19900101", "长期", None),
    ("20261124", "20461124", "尚未生效"),
    ("2016112", "20261123", "有效期无效"),
    ("20160230", "20360230", "有效期无效"),
    (None, None, None),                      # a card object without validity (tests, manual entry)
])
def test_validity_period(valid_from, valid_to, reason) -> None:
    if reason is None:
        check_validity(valid_from, valid_to, TODAY)
    else:
        with pytest.raises(InvalidCard, match=reason):
            check_validity(valid_from, valid_to, TODAY)
