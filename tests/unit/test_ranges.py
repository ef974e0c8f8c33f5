"""Unit tests of block-range arithmetic: the FROM/TO parser, job cutting, gap naming."""

import pytest

from indexer.errors import BadRange
from indexer.ranges import chunks, describe, parse_range, runs


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("0", "0", (0, 0)),
        ("1", "5000", (1, 5000)),
        (" 7 ", "9\n", (7, 9)),
        ("0x10", "0X20", (16, 32)),
        ("0x0", "10", (0, 10)),
    ],
)
def test_parse_range_accepts_decimal_and_hex(
    start: str, end: str, expected: tuple[int, int]
) -> None:
    assert parse_range(start, end) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("5", "3", r"FROM \(5\) is greater than TO \(3\)"),
        ("0x20", "0x10", r"FROM \(32\) is greater than TO \(16\)"),
        ("-1", "5", "FROM must not be negative, got -1"),
        ("1", "-5", "TO must not be negative, got -5"),
        ("abc", "5", "FROM must be a block number, got 'abc'"),
        ("1", "5.0", "TO must be a block number, got '5.0'"),
        ("", "5", "FROM must be a block number, got ''"),
        ("0xzz", "5", "FROM must be a block number, got '0xzz'"),
        ("1e3", "5", "FROM must be a block number"),
    ],
)
def test_parse_range_names_the_problem(start: str, end: str, message: str) -> None:
    with pytest.raises(BadRange, match=message):
        parse_range(start, end)


def test_runs_merge_consecutive_heights_whatever_the_order() -> None:
    assert runs([9, 3, 4, 5, 12, 4, 13]) == [(3, 5), (9, 9), (12, 13)]
    assert runs([]) == []


def test_chunks_cut_runs_into_jobs_of_at_most_size_heights() -> None:
    assert chunks([1, 2, 3, 4, 5], 2) == [(1, 2), (3, 4), (5, 5)]
    assert chunks([1, 2, 3, 7, 8, 20], 10) == [(1, 3), (7, 8), (20, 20)]
    assert chunks(list(range(100, 130)), 10) == [(100, 109), (110, 119), (120, 129)]
    assert chunks([5], 1) == [(5, 5)]
    assert chunks([], 10) == []


def test_chunks_cover_every_height_exactly_once() -> None:
    numbers = [n for n in range(1, 200) if n % 7 and n % 11]
    covered = [n for lo, hi in chunks(numbers, 4) for n in range(lo, hi + 1)]
    assert covered == numbers
    assert all(hi - lo + 1 <= 4 for lo, hi in chunks(numbers, 4))


def test_describe_names_runs_and_summarises_the_rest() -> None:
    assert describe([3, 4, 5, 9, 12, 13, 14]) == "3-5, 9, 12-14"
    assert describe([]) == ""
    many = [n * 10 for n in range(15)]
    text = describe(many, limit=3)
    assert text.startswith("0, 10, 20")
    assert text.endswith("and 12 more ranges")
