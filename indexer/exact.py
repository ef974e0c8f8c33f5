"""Exact prices: a rational rounded to 40 significant digits, and a text key that sorts
like the numbers it stands for.

Everything here is integer arithmetic, so no `decimal` context (28 digits and silent
rounding by default) is involved anywhere: a price is exact whenever its decimal
expansion has at most 40 significant digits, and rounded half to even otherwise.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

DIGITS = 40  # significant digits of `priceExact`
_EXPONENT_OFFSET = 50_000  # sort keys hold adjusted exponents from -50,000 to 49,999


def round_exact(value: Fraction) -> str:
    """`value` rounded to 40 significant digits, ROUND_HALF_EVEN, as a plain decimal
    string: no exponent, no trailing zeros after the point, never `-0`."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    num, den = abs(value.numerator), value.denominator
    # shift: the power of ten that brings the value to DIGITS integer digits
    shift = DIGITS - _integer_digits(num, den)
    scaled_num = num * 10**shift if shift >= 0 else num
    scaled_den = den if shift >= 0 else den * 10**-shift
    digits = _round_half_even(scaled_num, scaled_den)
    if digits == 10**DIGITS:  # 9.99…95 rounded up to the next power of ten
        digits //= 10
        shift -= 1
    return sign + _place_point(digits, shift)


def _integer_digits(num: int, den: int) -> int:
    """How many digits the integer part of num/den has; below 1, minus the count of
    zeros after the point plus one (0.05 -> -1, 0.5 -> 0, 5 -> 1)."""
    guess = len(str(num)) - len(str(den))
    # 10**(guess-1) <= num/den < 10**(guess+1): correct the guess by one if needed
    if _at_least_power(num, den, guess):
        return guess + 1
    return guess


def _at_least_power(num: int, den: int, exponent: int) -> bool:
    """num/den >= 10**exponent."""
    if exponent >= 0:
        return num >= den * 10**exponent
    return num * 10**-exponent >= den


def _round_half_even(num: int, den: int) -> int:
    quotient, remainder = divmod(num, den)
    twice = 2 * remainder
    if twice > den or (twice == den and quotient % 2 == 1):
        quotient += 1
    return quotient


def _place_point(digits: int, shift: int) -> str:
    """The decimal string of digits * 10**-shift, trailing fractional zeros removed."""
    text = str(digits)
    if shift <= 0:
        return text + "0" * -shift
    text = text.rjust(shift + 1, "0")
    whole, fraction = text[:-shift], text[-shift:].rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def plain(value: Decimal) -> str:
    """A decimal as `priceExact` writes it: no exponent, no trailing fractional zeros,
    never `-0` (the API's history and candles write stored prices the same way)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def significant_digits(value: Decimal) -> int:
    """How many significant digits a finite decimal has (0 for zero)."""
    digits = value.as_tuple().digits
    text = "".join(map(str, digits)).strip("0")
    return len(text)


def sort_key(value: Decimal) -> str:
    """A fixed-width text that sorts, as text, like the numbers do.

    SQLite stores prices as text, where MAX compares strings and CAST AS REAL rounds;
    this key makes exact comparisons in SQL possible on both databases. Layout: a class
    character (0 negative, 1 zero, 2 positive), five digits of adjusted exponent, then
    40 digits of significand (nine's complement for negatives, so that larger
    magnitudes sort lower). Digits beyond the 40th are dropped (no stored price has
    them: every price is rounded to 40 digits first).
    """
    if not value.is_finite():
        raise ValueError(f"no sort key for {value}")
    if value == 0:
        return "1"
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    adjusted = exponent + len("".join(map(str, digit_tuple))) - 1
    significand = digits.rstrip("0")[:DIGITS].ljust(DIGITS, "0")
    position = adjusted + _EXPONENT_OFFSET
    if not 0 <= position < 2 * _EXPONENT_OFFSET:
        raise ValueError(f"exponent of {value} out of range")
    if sign == 0:
        return f"2{position:05d}{significand}"
    complement = "".join(str(9 - int(c)) for c in significand)
    return f"0{2 * _EXPONENT_OFFSET - 1 - position:05d}{complement}"
