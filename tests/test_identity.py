from __future__ import annotations

from datetime import date

import pytest

from hall_controller.identity import (
    InvalidIdNumber,
    age_band,
    check_digit,
    id_hash,
    mask_id_number,
    mask_name,
    parse_id_number,
)


def test_check_digit_of_the_standard_example():
    # GB 11643-1999 worked example 11010519491231002X:
    # digits 1 1 0 1 0 5 1 9 4 9 1 2 3 1 0 0 2 x weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
    # = 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167; 167 mod 11 = 2 -> 'X'
    assert check_digit("11010519491231002") == "X"
    info = parse_id_number("11010519491231002x")
    assert info.birth_date == date(1949, 12, 31)
    assert info.sex == "女"          # 17th digit 2 is even
    assert info.age_on(date(2026, 11, 23)) == 76
    assert info.age_on(date(2026, 12, 31)) == 77


@pytest.mark.parametrize("number, reason", [
    ("11010519491231002", "18位"),                 # too short
    ("1101051949123100211", "18位"),               # too long
    ("11010519491231002Y", "18位"),                # bad last character
    ("110105194912310021", "校验位"),              # wrong check digit
    ("110105194902300024", "出生日期"),            # 30 February
    ("110105187001010012", "出生日期"),            # before 1880
    ("000105194912310021", "地区码"),
])
def test_invalid_numbers_are_rejected_with_a_reason(number, reason):
    with pytest.raises(InvalidIdNumber) as err:
        parse_id_number(number)
    assert reason in str(err.value)


def test_future_birth_date_is_rejected():
    first17 = "11010520300101001"
    with pytest.raises(InvalidIdNumber, match="出生日期"):
        parse_id_number(first17 + check_digit(first17), today=date(2026, 11, 23))


def test_masking_and_keyed_hash():
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("") == ""
    a = id_hash("11010519491231002X", b"hall-a")
    assert a == id_hash("11010519491231002x", b"hall-a")      # case of X does not matter
    assert a != id_hash("11010519491231002X", b"hall-b")      # keyed per hall
    assert "11010519491231002X" not in a


def test_age_bands():
    assert [age_band(a) for a in (5, 18, 44, 60, 79, 80, 101)] == ["0-17", "18-29", "30-44", "60-69", "70-79",
                                                                    "80+", "80+"]
