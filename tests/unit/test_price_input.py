"""Hostile input to `chainpulse price set` and to the price sources file, generated:
whatever is given, a clear one-line refusal or a value that can be stored, never an
exception of another kind."""

from __future__ import annotations

import copy
import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.exact import significant_digits
from indexer.price_store import BadPrice, check_token, parse_price
from indexer.sources import SourcesError, load_sources
from tests.harness import sources

numbers = st.builds(
    "{}{}e{}".format,
    st.sampled_from(["", "-", "+", " "]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**9), max_value=10**9),
)


@given(value=st.text(max_size=200) | numbers | st.integers(min_value=-(10**90), max_value=10**90))
def test_any_price_is_stored_exactly_or_refused_in_one_line(value: str | int) -> None:
    try:
        price = parse_price(value)
    except BadPrice as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 200
        return
    assert isinstance(price, Decimal) and price.is_finite()
    assert Decimal(0) <= price < Decimal("1e78") and significant_digits(price) <= 40
    assert len(format(price, "f")) <= 160  # what the database and the stream will hold
    assert not format(price, "f").startswith("-")


@given(token=st.text(max_size=100))
def test_any_token_is_accepted_or_refused_in_one_line(token: str) -> None:
    try:
        check_token(token)
    except BadPrice as exc:
        assert "\n" not in str(exc)


GOOD_DOCUMENT = tomllib.loads(sources.toml(sources.SAMPLE))
FIELDS = sorted({key for entry in GOOD_DOCUMENT["source"] for key in entry} | {"extra"})
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(
        st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from(FIELDS), values),
        min_size=1,
        max_size=3,
    )
)
def test_any_damaged_sources_file_loads_or_is_refused_in_one_line(
    tmp_path: Path, changes: list[tuple[int, str, Any]]
) -> None:
    document = copy.deepcopy(GOOD_DOCUMENT)
    for index, field, value in changes:
        if value is None:
            document["source"][index].pop(field, None)
        else:
            document["source"][index][field] = value
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document, allow_nan=True))
    try:
        load_sources(str(path))
    except SourcesError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith(f"PRICE_SOURCES {path}: "), line


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_as_a_toml_sources_file_loads_or_is_refused_in_one_line(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_sources(str(path))
    except SourcesError as exc:
        assert "\n" not in str(exc)
