"""The contracts file: what it accepts, and a bad one refused in one line naming the
file, the entry and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainpulse.contracts import artifacts
from chainpulse.settings import Settings
from indexer.contracts import ContractsError, load_contracts
from indexer.errors import ConfigError

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
FACTORY = "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
PAIR_CREATED = "PairCreated(address indexed token0, address indexed token1, address pair, uint256)"

SWAP = (
    "event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, "
    "uint256 amount0Out, uint256 amount1Out, address indexed to)"
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "contracts.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def abis(tmp_path: Path) -> Path:
    """An ABI as a plain list and a Foundry-style artifact that holds one."""
    (tmp_path / "token.json").write_text(json.dumps(artifacts()["TestToken"]["abi"]))
    (tmp_path / "events.json").write_text(json.dumps({"abi": artifacts()["TestEvents"]["abi"]}))
    return tmp_path


def test_the_issue_example_loads(abis: Path) -> None:
    path = write(
        abis,
        f"""
[[contract]]
name = "USDC"
address = "{USDC}"
abi = "token.json"
events = ["Transfer"]
start_block = 6082465

[[contract]]
name = "Pair"
factory = {{ address = "{FACTORY}", event = "{PAIR_CREATED}", parameter = "pair" }}
events = ["{SWAP}", "event Sync(uint112 reserve0, uint112 reserve1)"]
""",
    )
    loaded = load_contracts(path)
    usdc, pair = loaded.contracts
    assert usdc.addresses == (USDC.lower(),) and usdc.start_block == 6082465
    assert [e.signature for e in usdc.events] == ["Transfer(address,address,uint256)"]
    assert pair.addresses == () and pair.factory is not None
    assert pair.factory.address == FACTORY.lower() and pair.factory.parameter == "pair"
    assert [pair.key(e) for e in pair.events] == ["Swap", "Sync"]


def test_every_event_of_the_abi_by_default_and_overloads_keyed_by_signature(
    abis: Path,
) -> None:
    path = write(abis, f'[[contract]]\nname = "E"\naddress = "{USDC}"\nabi = "events.json"\n')
    [contract] = load_contracts(path).contracts
    keys = [contract.key(e) for e in contract.events]
    assert "Integers" in keys and "Anon" in keys
    assert "Overloaded(uint256)" in keys and "Overloaded(address,uint256)" in keys
    assert contract.event("Overloaded") is None  # ambiguous: no short name
    assert contract.event("Overloaded(uint256)") is not None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('name = "A.B"\naddress = "{USDC}"\nevents = ["E(uint256)"]', "field 'name' must be"),
        ('name = "A"\nevents = ["E(uint256)"]', "field 'address' is required"),
        ('name = "A"\naddress = "0x12"\nevents = ["E(uint256)"]', "field 'address' must be"),
        ('name = "A"\naddress = "{USDC}"', "field 'events' is required without an 'abi'"),
        ('name = "A"\naddress = "{USDC}"\nabi = "missing.json"', "field 'abi': cannot read"),
        ('name = "A"\naddress = "{USDC}"\nabi = "token.json"\nevents = ["Approval"]',
         "field 'events': the ABI has no event 'Approval' (its events: Transfer)"),
        ('name = "A"\naddress = "{USDC}"\nabi = "events.json"\nevents = ["Overloaded"]',
         "field 'events': 'Overloaded' is ambiguous"),
        ('name = "A"\naddress = "{USDC}"\nevents = ["Transfer(address from"]',
         "field 'events': 'Transfer(address from': expected , or )"),
        ('name = "A"\naddress = "{USDC}"\nabi = "token.json"\n'
         'events = ["Transfer(address from, address to, uint256 value)"]',
         "is not in the ABI"),
        ('name = "A"\naddress = "{USDC}"\nevents = ["Transfer"]', "give its signature"),
        ('name = "A"\naddress = "{USDC}"\nevents = ["E(uint256)"]\nstart_block = -1',
         "field 'start_block'"),
        ('name = "A"\naddress = "{USDC}"\nevents = ["E(uint256)"]\ncolour = 1',
         "unknown field 'colour'"),
        ('name = "A"\nevents = ["E(uint256)"]\n'
         'factory = {{ address = "{FACTORY}", event = "{PAIR_CREATED}", parameter = "token" }}',
         "field 'factory.parameter': PairCreated has no argument 'token'"),
        ('name = "A"\nevents = ["E(uint256)"]\n'
         'factory = {{ address = "{FACTORY}", event = "Made(uint256 pair)", parameter = "pair" }}',
         "field 'factory.parameter': 'pair' is uint256, not an address"),
    ],
)  # fmt: skip
def test_a_bad_entry_names_the_file_the_entry_and_the_field(
    abis: Path, body: str, says: str
) -> None:
    path = write(abis, "[[contract]]\n" + body.format(USDC=USDC, FACTORY=FACTORY,
                                                     PAIR_CREATED=PAIR_CREATED))  # fmt: skip
    with pytest.raises(ContractsError) as caught:
        load_contracts(path)
    message = str(caught.value)
    assert message.startswith(f"CONTRACTS {path}: contract 1"), message
    assert says in message, message


def test_a_signature_in_the_abi_matches_whatever_its_arguments_are_named(abis: Path) -> None:
    path = write(
        abis,
        f'[[contract]]\nname = "A"\naddress = "{USDC}"\nabi = "token.json"\n'
        'events = ["Transfer(address indexed, address indexed, uint256)"]\n',
    )
    [contract] = load_contracts(path).contracts
    assert contract.events[0].signature == "Transfer(address,address,uint256)"
    path = write(
        abis,
        f'[[contract]]\nname = "A"\naddress = "{USDC}"\nabi = "token.json"\n'
        'events = ["Transfer(address indexed a, address b, uint256 c)"]\n',
    )
    with pytest.raises(ContractsError, match="with its indexed arguments"):
        load_contracts(path)


def test_two_contracts_of_one_name_or_one_address_are_refused(abis: Path) -> None:
    entry = '[[contract]]\nname = "{}"\naddress = "{}"\nevents = ["E(uint256)"]\n'
    path = write(abis, entry.format("A", USDC) + entry.format("A", FACTORY))
    with pytest.raises(ContractsError, match=r"contract 2 \(A\): field 'name' repeats"):
        load_contracts(path)
    path = write(abis, entry.format("A", USDC) + entry.format("B", "0x" + USDC[2:].upper()))
    with pytest.raises(ContractsError, match=r"contract 2 \(B\): field 'address': 0xa0b8.* is "
                       r"contract 1 \(A\)'s already"):  # fmt: skip
        load_contracts(path)


def test_a_contract_on_a_chain_the_deployment_lacks_stops_the_start(abis: Path) -> None:
    path = write(
        abis,
        f'[[contract]]\nname = "A"\nchain = "base"\naddress = "{USDC}"\nevents = ["E(uint)"]\n',
    )
    env: dict[str, Any] = {"CONTRACTS": path, "ETH_RPC_URL": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match=r"field 'chain': no chain named 'base' \(chains: main\)"):
        Settings.from_env(env, dotenv=False)
    (abis / "chains.toml").write_text(
        '[[chain]]\nname = "one"\nchain_id = 1\nrpc = "http://127.0.0.1:1"\n\n'
        '[[chain]]\nname = "base"\nchain_id = 8453\nrpc = "http://127.0.0.1:2"\n'
    )
    settings = Settings.from_env(
        {"CONTRACTS": path, "CHAINS": str(abis / "chains.toml")}, dotenv=False
    )
    assert [len(view.contracts) for view in settings.chains()] == [0, 1]
    # one address, one contract per chain: the primary named or left out is one chain
    (abis / "two.toml").write_text(
        f'[[contract]]\nname = "A"\naddress = "{USDC}"\nevents = ["E(uint)"]\n\n'
        f'[[contract]]\nname = "B"\nchain = "one"\naddress = "{USDC}"\nevents = ["E(uint)"]\n'
    )
    with pytest.raises(ConfigError, match=r"contract 2 \(B\): field 'address'.* on chain one"):
        Settings.from_env(
            {"CONTRACTS": str(abis / "two.toml"), "CHAINS": str(abis / "chains.toml")},
            dotenv=False,
        )
