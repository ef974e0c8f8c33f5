import os
import re
from pathlib import Path

import pytest
from celery import Celery

from chainpulse.settings import Settings
from indexer.errors import ConfigError
from indexer.urls import mask_url
from workers.app import configure

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({}, dotenv=False)
    assert s.rpc_urls == ("http://127.0.0.1:8545",)
    assert s.database_url == "sqlite:///chainpulse.db"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.port == 3000
    assert s.cors_origins == ("*",)
    assert s.require_auth is False
    assert s.confirmations == 0
    assert s.start_block is None


def test_lists_and_types_are_parsed() -> None:
    s = Settings.from_env(
        {
            "ETH_RPC_URL": "http://a:1, http://b:2",
            "REQUIRE_AUTH": "true",
            "PORT": "4000",
            "POLL_INTERVAL": "0.1",
        },
        dotenv=False,
    )
    assert s.rpc_urls == ("http://a:1", "http://b:2")
    assert s.require_auth is True
    assert s.port == 4000
    assert s.poll_interval == 0.1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "abc"}, "PORT must be a whole number"),
        ({"CONFIRMATIONS": "-1"}, "CONFIRMATIONS must be at least 0"),
        ({"REQUIRE_AUTH": "maybe"}, "REQUIRE_AUTH must be true or false"),
        ({"POLL_INTERVAL": "0"}, "POLL_INTERVAL must be positive"),
        ({"ETH_RPC_URL": " , "}, "ETH_RPC_URL is set but lists nothing"),
        ({"RETRY_BACKOFF_MAX": "90"}, "RETRY_BACKOFF_MAX must stay below VISIBILITY_TIMEOUT"),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY must be at least 1"),
    ],
)
def test_bad_values_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, dotenv=False)


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql://u:secret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert mask_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def configured(settings: Settings) -> Celery:
    app = Celery(set_as_current=False)
    configure(app, settings)
    return app


def test_worker_concurrency_defaults_to_one_more_than_cores() -> None:
    assert configured(Settings.from_env({}, dotenv=False)).conf.worker_concurrency == (
        (os.cpu_count() or 1) + 1
    )
    chosen = Settings.from_env({"WORKER_CONCURRENCY": "5"}, dotenv=False)
    assert configured(chosen).conf.worker_concurrency == 5


def documented_configuration() -> dict[str, str]:
    """docs/configuration.md's table: variable -> default, as written there."""
    section = (ROOT / "docs" / "configuration.md").read_text()
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(", ")]
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), line
        table.update(zip(names, defaults, strict=True))
    return table


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    declared = {item.env: item.default for item in Settings.declared()}
    assert documented_configuration() == declared


def test_each_setting_is_declared_once() -> None:
    names = [item.env for item in Settings.declared()]
    assert len(names) == len(set(names))
    assert all(item.meaning for item in Settings.declared())
