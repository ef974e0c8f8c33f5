"""priceExact: 40 significant digits, half to even, no exponent; and the sort key."""

from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.exact import round_exact, significant_digits, sort_key


def reference(value: Fraction) -> str:
    """The same rounding through `decimal` with an explicit 40-digit context, from an
    exact 200-digit quotient (enough for every value the tests draw)."""
    wide = Context(prec=400)
    exact = wide.divide(Decimal(value.numerator), Decimal(value.denominator))
    rounded = Context(prec=40, rounding=ROUND_HALF_EVEN).plus(exact)
    text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(0), "0"),
        (Fraction(1, 3), "0.3333333333333333333333333333333333333333"),
        (Fraction(2, 3), "0.6666666666666666666666666666666666666667"),
        (Fraction(-2, 3), "-0.6666666666666666666666666666666666666667"),
        (Fraction(10**50), "1" + "0" * 50),
        (Fraction(1, 10**60), "0." + "0" * 59 + "1"),
        (Fraction(5, 2), "2.5"),
        # ties go to the even digit at the 40th place
        (Fraction(10**40 + 5, 10), "1" + "0" * 38 + "0"),  # ...0.5 -> ...0
        (Fraction(10**40 + 15, 10), "1" + "0" * 38 + "2"),  # ...1.5 -> ...2
        (Fraction(10**41 - 5, 10**42), "0.1"),  # 0.0999…95 rounds up to a power of ten
    ],
)
def test_known_values(value: Fraction, expected: str) -> None:
    assert round_exact(value) == expected


def test_an_exact_value_within_40_digits_is_kept_whole() -> None:
    value = Fraction(123456789012345678901234567890123456789, 10**20)
    assert round_exact(value) == "1234567890123456789.01234567890123456789"


@given(
    st.integers(min_value=-(2**320), max_value=2**320),
    st.integers(min_value=1, max_value=2**320),
)
def test_agrees_with_decimal_at_40_digits(num: int, den: int) -> None:
    value = Fraction(num, den)
    assert round_exact(value) == reference(value)


@given(
    st.integers(min_value=0, max_value=2**112 - 1),
    st.integers(min_value=1, max_value=2**112 - 1),
)
def test_no_exponent_and_never_minus_zero(a: int, b: int) -> None:
    text = round_exact(Fraction(a, b))
    assert "e" not in text.lower() and text != "-0"
    assert significant_digits(Decimal(text)) <= 40


@given(
    st.lists(
        st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
            lambda d: significant_digits(d) <= 40 and abs(d.adjusted()) < 1000
        ),
        min_size=2,
        max_size=20,
    )
)
def test_sort_key_orders_like_the_numbers(values: list[Decimal]) -> None:
    by_key = sorted(values, key=sort_key)
    assert [Decimal(v) for v in by_key] == sorted(values)
    assert len(sort_key(values[0])) in (1, 46)


def test_sort_key_of_equal_values_is_equal() -> None:
    assert sort_key(Decimal("1.50")) == sort_key(Decimal("1.5"))
    assert sort_key(Decimal("-0")) == sort_key(Decimal("0")) == "1"
