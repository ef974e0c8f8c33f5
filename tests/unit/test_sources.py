"""The price sources file: what it accepts, and one line naming file, entry and field for
everything it refuses."""

import json
from pathlib import Path

import pytest

from indexer.sources import Leg, SourcesError, load_sources
from tests.harness import sources

GOOD = sources.toml(sources.SAMPLE)
POOL, FEED = sources.POOL, sources.FEED


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_good_file(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, GOOD))
    assert [s.token for s in sources.sources] == ["WETH", "UNI", "ETH", "UNI-USD", "USD-UNI"]
    feed = sources.by_token["ETH"]
    assert feed.address == FEED.lower() and feed.decimals == 8
    assert sources.by_token["USD-UNI"].legs == (Leg("UNI-USD", inverted=True),)
    # a leg's change reaches every derived price built on it, in dependency order
    assert [d.token for d in sources.dependents["UNI"]] == ["UNI-USD", "USD-UNI"]
    assert sources.dependents["WETH"] == ()
    assert sources.owns("ETH") is feed and sources.owns("BTC") is None


def test_json_is_accepted(tmp_path: Path) -> None:
    document = {
        "source": [
            {
                "name": "f",
                "kind": "chainlink",
                "token": "ETH",
                "quote": "USD",
                "address": FEED,
                "decimals": 8,
            }
        ]
    }
    sources = load_sources(write(tmp_path, json.dumps(document), "prices.json"))
    assert sources.by_token["ETH"].kind == "chainlink"


FEED_ENTRY = (
    f'name = "f"\nkind = "chainlink"\ntoken = "ETH"\nquote = "USD"\n'
    f'address = "{FEED}"\ndecimals = 8\n'
)


def derived(name: str, token: str, legs: str) -> str:
    return (
        f'[[source]]\nname = "{name}"\nkind = "derived"\ntoken = "{token}"\n'
        f'quote = "USD"\nlegs = {legs}\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[source]]\n" + FEED_ENTRY.replace('"chainlink"', '"uniswap_v4"'),
            "source 1 ('f'): field 'kind': unknown kind 'uniswap_v4'",
        ),
        (
            "[[source]]\n" + FEED_ENTRY.replace("decimals = 8\n", "decimals = 78\n"),
            "source 1 ('f'): field 'decimals': expected 0 to 77, got 78",
        ),
        (
            "[[source]]\n" + FEED_ENTRY.replace(FEED, "0x1234"),
            "source 1 ('f'): field 'address': expected 0x and 40 hex digits, got '0x1234'",
        ),
        (
            "[[source]]\n" + FEED_ENTRY + "[[source]]\n" + FEED_ENTRY.replace('"f"', '"g"'),
            "source 2 ('g'): field 'token': 'ETH' already has source 1: one source per token",
        ),
        (
            "[[source]]\n" + FEED_ENTRY + "[[source]]\n" + FEED_ENTRY.replace('"ETH"', '"BTC"'),
            "source 2 ('f'): field 'name': also used by source 1",
        ),
        (
            "[[source]]\n" + FEED_ENTRY + derived("d", "X", '["ETH", "BTC"]'),
            "source 2 ('d'): field 'legs': 'BTC' names no source's token",
        ),
        (
            derived("a", "A", '["B"]') + derived("b", "B", '["1/A"]'),
            "field 'legs': a cycle: A -> B -> A",
        ),
        (
            "[[source]]\n" + FEED_ENTRY + 'base = "token0"\n',
            "source 1 ('f'): field 'base': not a field of a chainlink source",
        ),
        (
            "[[source]]\n" + FEED_ENTRY.replace("decimals = 8", 'decimals = "8"'),
            "source 1 ('f'): field 'decimals': expected a whole number, got '8'",
        ),
        (
            "[[source]]\n" + FEED_ENTRY.replace('token = "ETH"', 'token = "price:ETH"'),
            "source 1 ('f'): field 'token': expected 1 to 32 of A-Z a-z 0-9 . _ -",
        ),
        (
            "[[source]]\n" + FEED_ENTRY.replace('name = "f"\n', ""),
            "source 1: field 'name': missing",
        ),
        ('name = "x"\n', "unknown top-level key 'name'"),
        ("", "no [[source]] tables"),
        ("[[source]\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SourcesError) as caught:
        load_sources(path)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"PRICE_SOURCES {path}: ")
    assert message in line


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="cannot read it"):
        load_sources(str(tmp_path / "nope.toml"))


def test_the_setting_loads_the_file(tmp_path: Path) -> None:
    from indexer.config import IndexerSettings

    path = write(tmp_path, GOOD)
    settings = IndexerSettings.from_env({"PRICE_SOURCES": path})
    assert settings.price_sources is not None and settings.price_sources.path == path
    with pytest.raises(SourcesError):
        IndexerSettings.from_env({"PRICE_SOURCES": write(tmp_path, "", "empty.toml")})
