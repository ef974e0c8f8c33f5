"""The command line (contract: docs/operations.md, Command line). Each command is thin: it reads
the settings once, calls one domain function and turns errors into one-line messages.

Exit codes: 0 success, 1 work that failed (e.g. blocks that failed for good),
2 bad input or an unreachable dependency.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from chainpulse.settings import Settings
from indexer.errors import ChainpulseError, RetryableError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    click.echo(f"chainpulse: {message}", err=True)
    sys.exit(code)


def friendly_errors(func: F) -> F:
    """Turn chainpulse's errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ChainpulseError, RetryableError) as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    """The settings from the environment over `./.env`, over those of a `chainpulse dev`
    running in this folder (`chainpulse.devfile`)."""
    from dotenv import dotenv_values

    from chainpulse import devfile

    own = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    dev = devfile.read()
    if any(key not in own for key in dev):
        click.echo(f"chainpulse: using the running dev stack's settings ({devfile.PATH})", err=True)
    try:
        return Settings.from_env({**dev, **own}, dotenv=False)
    except ChainpulseError as exc:
        fail(str(exc))
        raise  # unreachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """chainpulse: an EVM indexer with realtime Socket.IO push."""


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
@friendly_errors
def db_upgrade(revision: str) -> None:
    """Apply the migrations (run once per release)."""
    from indexer.schema import upgrade

    s = settings()
    upgrade(s.database_url, revision)
    click.echo(f"database at {_masked(s.database_url)} is at revision {revision}")


# A negative FROM or TO looks like an option to click; let it through to parse_range,
# which names the problem ("FROM must not be negative") instead of "No such option".
@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("start", metavar="FROM", type=str)
@click.argument("end", metavar="TO", type=str)
@click.option("--wait", is_flag=True, help="Show progress and wait until every block is done.")
@click.option("--force", is_flag=True, help="Re-index blocks that are already stored.")
@click.option(
    "--chain", "chain_name", default=None, help="The chain of this name (default: the primary)."
)
@friendly_errors
def backfill(start: str, end: str, wait: bool, force: bool, chain_name: str | None) -> None:
    """Enqueue blocks FROM..TO (inclusive) of a chain on the `blocks` queue."""
    from chainpulse.backfill import run_backfill

    s = settings()
    view = s.chain(chain_name) if chain_name is not None else s.chains()[0]
    code = run_backfill(view, start, end, wait=wait, force=force)
    # Every job is on the broker and the database is closed: skip the interpreter's
    # teardown of web3's, Celery's and SQLAlchemy's modules, about 0.2 s of exit time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--chain", "chain_name", default=None, help="Only the chain of this name.")
@friendly_errors
def status(as_json: bool, chain_name: str | None) -> None:
    """Per chain: node head, highest indexed block, lag, missing ranges, failures; and
    the queue depth."""
    from chainpulse.status import collect_status, render_status

    s = settings()
    views = (s.chain(chain_name),) if chain_name is not None else s.chains()
    reports = [collect_status(view) for view in views]
    if as_json:
        shown: object = reports[0] if s.chains_file is None else {"chains": reports}
        click.echo(json.dumps(shown, indent=2))
    else:
        click.echo("\n\n".join(render_status(report) for report in reports))
    if any(report["errors"] for report in reports):
        sys.exit(2)


@cli.command()
@friendly_errors
def serve() -> None:
    """Run the realtime Socket.IO server (eventlet) on PORT."""
    from realtime.server import run

    run(settings())


@cli.command()
@click.option(
    "--clear-halt",
    is_flag=True,
    help="Forget a halt left by a reorg deeper than MAX_REORG_DEPTH, after fixing its cause.",
)
@friendly_errors
def follow(clear_halt: bool) -> None:
    """Follow the chain head: enqueue new blocks in order and repair reorgs."""
    from follower.process import run

    s = settings()
    if clear_halt:
        from indexer.reorg import clear_halt as clear
        from indexer.store import Store

        for view in s.chains():  # every chain's: the operator has dealt with its cause
            store = Store(s.database_url, chain_id=view.chain_id)
            try:
                clear(store)
            finally:
                store.dispose()
        click.echo("halt cleared; following", err=True)
    run(s)


@cli.group()
def price() -> None:
    """Manual prices."""


# A negative PRICE looks like an option to click: let it through to be refused by name.
@price.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("token_name", metavar="TOKEN")
@click.argument("value", metavar="PRICE")
@click.option("--quote", default=None, help="What the price is expressed in (USD, ETH, ...).")
@friendly_errors
def price_set(token_name: str, value: str, quote: str | None) -> None:
    """Store and publish a manual price for TOKEN (`source: manual`)."""
    from indexer import outbox
    from indexer.bus import BusUnavailable, EventBus
    from indexer.store import Store

    s = settings()
    store = Store(s.database_url)
    bus = EventBus.from_url(s.redis_url, s.stream_key, s.stream_maxlen)
    try:
        store.check_schema()
        from indexer.price_store import check_token

        for view in s.chains():  # a token any chain's sources price is refused
            check_token(token_name, view.price_sources)
        event = store.record_manual_price(token_name, value, quote, sources=s.price_sources)
        unit = f" {event.quote}" if event.quote else ""
        stored = f"{event.token} = {event.price}{unit} (manual)"
        try:
            outbox.relay(store, bus)
        except BusUnavailable as exc:
            click.echo(f"{stored} stored; Redis did not answer ({exc}): a worker publishes it")
            return
        click.echo(f"{stored}, published to price:{event.token}")
    finally:
        store.dispose()
        bus.client.close()


@cli.group()
def prices() -> None:
    """Price sources."""


@prices.command("check")
@click.argument("path", metavar="FILE", type=str)
@click.option(
    "--chain",
    "chain_name",
    default=None,
    help="With CHAINS: the chain whose node to ask (default: the chain whose `prices` is "
    "FILE, else the primary).",
)
@friendly_errors
def prices_check(path: str, chain_name: str | None) -> None:
    """Validate a price sources file without starting anything: its shape, and, when
    its chain's node answers, what the chain says of its pools and feeds."""
    from indexer.rpc import Node
    from indexer.source_metadata import resolve_all
    from indexer.sources import load_sources

    checked = load_sources(path)
    kinds: dict[str, int] = {}
    for source in checked.sources:
        kinds[source.kind] = kinds.get(source.kind, 0) + 1
    listed = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    count = len(checked.sources)
    head = f"{path}: {count} source{'' if count == 1 else 's'} ({listed})"
    if not any(source.on_chain for source in checked.sources):
        click.echo(f"{head}: ok")
        return
    node = Node.from_settings(_chain_of(settings(), path, chain_name))  # with its budget
    try:
        resolved, _ = resolve_all(node, checked, {})
    except RetryableError as exc:
        click.echo(
            f"{head}: the file's shape is ok; its pools and feeds were not checked "
            f"against the chain: the node at {node.describe()} does not answer ({exc})"
        )
        return
    click.echo(f"{head}: ok, checked against the chain at {node.describe()}")
    for source in resolved.sources:
        if source.kind == "chainlink":
            behind = (
                f", a proxy for aggregator {source.aggregators[-1][1]}"
                if source.aggregators
                else ""
            )
            click.echo(
                f"  {source.name}: {source.token} in {source.quote}, "
                f"{source.decimals} decimals{behind}"
            )
        elif source.on_chain:
            click.echo(
                f"  {source.name}: {source.token} is {source.base} "
                f"(decimals0 {source.decimals0}, decimals1 {source.decimals1})"
            )


def _chain_of(config: Settings, path: str, chain_name: str | None) -> Settings:
    """The chain a price sources file at `path` is checked against: the one named, else
    the one whose `prices` it is, else the primary."""
    if chain_name is not None:
        return config.chain(chain_name)
    views = config.chains()
    target = Path(path).resolve()
    for view in views:
        sources = view.price_sources
        if sources is not None and Path(sources.path).resolve() == target:
            return view
    return views[0]


@cli.group()
def chains() -> None:
    """The chains file."""


@chains.command("check")
@click.argument("path", metavar="FILE", type=str)
@click.option("--offline", is_flag=True, help="Read the file only; ask no node.")
@friendly_errors
def chains_check(path: str, offline: bool) -> None:
    """Validate a chains file without starting anything: its shape, its price sources
    files, and (unless --offline) each chain's node, asked for its chain id."""
    from indexer.chains import check_node, load_chains
    from indexer.rpc import Node

    checked = load_chains(path)
    count = len(checked.entries)
    click.echo(
        f"{path}: {count} chain{'' if count == 1 else 's'}, the primary {checked.primary.name}"
    )
    unanswered = 0
    for entry in checked.entries:
        priced = f", {len(entry.prices.sources)} price sources" if entry.prices else ""
        line = f"  {entry.name}: chain {entry.chain_id}{priced}"
        if offline:
            click.echo(line)
            continue
        node = Node(entry.rpc)
        try:
            served = node.chain_id()
        except RetryableError as exc:
            unanswered += 1
            click.echo(f"{line}: its node at {node.describe()} does not answer ({exc})")
            continue
        check_node(entry.name, entry.chain_id, served, f"CHAINS {path}")
        click.echo(f"{line}: its node at {node.describe()} serves it")
    if unanswered:
        raise click.exceptions.Exit(1)


@cli.group()
def contracts() -> None:
    """The contracts file."""


@contracts.command("check")
@click.argument("path", metavar="FILE", type=str)
@friendly_errors
def contracts_check(path: str) -> None:
    """Validate a contracts file and the ABIs it names without starting anything; list
    each contract's events as rooms and rows will know them."""
    from indexer.contracts import load_contracts

    checked = load_contracts(path)
    count = len(checked.contracts)
    click.echo(f"{path}: {count} contract{'' if count == 1 else 's'}: ok")
    for contract in checked.contracts:
        where = f"on chain {contract.chain}" if contract.chain else "on the primary chain"
        if contract.factory is not None:
            factory = contract.factory
            made = f"children of {factory.address} ({factory.event.name}.{factory.parameter})"
            found = [*contract.addresses, made] if contract.addresses else [made]
        else:
            found = list(contract.addresses)
        since = f", from block {contract.start_block}" if contract.start_block is not None else ""
        click.echo(f"  {contract.name} {where}{since}: {', '.join(found)}")
        for event in contract.events:
            indexed = ", ".join(p.name or "?" for p in event.indexed) or "none"
            click.echo(
                f"    events:{contract.name}.{contract.key(event)}  {event.signature}"
                f"{' (anonymous)' if event.anonymous else ''}; indexed: {indexed}"
            )


@contracts.command("sync")
@click.argument("name", metavar="[NAME]", required=False)
@click.option("--wait", is_flag=True, help="Show progress until every contract is decoded.")
@friendly_errors
def contracts_sync(name: str | None, wait: bool) -> None:
    """Decode the history of contracts added to CONTRACTS, or changed, from the stored
    logs (no node calls), as jobs the workers run beside indexing."""
    from chainpulse.contract_sync import run_sync

    s = settings()
    code = run_sync(s.chains(), name, wait)
    sys.exit(code)


@cli.command()
@click.option("--sub", required=True, help="The token's subject (user id).")
@click.option(
    "--ttl",
    default=3600,
    show_default=True,
    type=click.IntRange(min=1),
    help="Lifetime in seconds.",
)
@friendly_errors
def token(sub: str, ttl: int) -> None:
    """Issue a development JWT signed with JWT_SECRET."""
    from realtime.auth import issue_token

    click.echo(issue_token(settings(), sub, ttl))


@cli.command()
@click.option("--fresh", is_flag=True, help="Forget the local chain and database in .dev/ first.")
@click.option(
    "--chains",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="2: a second anvil (chain 31338) with a market of its own, both in a chains file.",
)
@friendly_errors
def dev(fresh: bool, chains: int) -> None:
    """The whole stack on embedded defaults: anvil, Redis, worker, follower and server."""
    from chainpulse.dev import run

    sys.exit(run(fresh=fresh, chains=chains))


def _masked(url: str) -> str:
    from indexer.urls import mask_url

    return mask_url(url)
