"""Unit tests of decoding a raw JSON-RPC block and its receipts into stored rows."""

import pytest

from indexer.blocks import decode
from indexer.errors import RpcError

BIG = 2**256 - 1
SENDER = "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # checksummed, as web3 would give it
PINGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DEPLOYED = "0xE7F1725E7734CE288F8367E1BB143E90BB3F0512"
TOPIC = "0xE2A96E1A3428F4DF324A6E38E2A9639C4553BE71ECB6DC55CF078EC326E54C8E"


def tx(hash_: str, index: int, **fields: object) -> dict[str, object]:
    return {
        "hash": hash_,
        "transactionIndex": hex(index),
        "from": SENDER,
        "to": PINGER,
        "value": "0x0",
        "gas": "0xea60",
        "gasPrice": "0x6fca5dc2",
        "nonce": hex(index),
        **fields,
    }


def receipt(hash_: str, **fields: object) -> dict[str, object]:
    return {
        "transactionHash": hash_,
        "status": "0x1",
        "gasUsed": "0x5208",
        "contractAddress": None,
        "logs": [],
        **fields,
    }


H1, H2, H3 = ("0x" + c * 64 for c in "ABC")

RAW = {
    "number": "0x2a",
    "hash": "0x" + "D" * 64,
    "parentHash": "0x" + "E" * 64,
    "timestamp": "0x6b074d45",
    "gasUsed": "0x29c02",
    "gasLimit": "0x1c9c380",
    "baseFeePerGas": hex(BIG),
    "miner": PINGER,
    "transactions": [
        tx(H1, 0, to=None, value="0x0"),
        tx(H2, 1, value=hex(BIG)),
        tx(H3, 2, value="0x0"),
    ],
}
RECEIPTS = [
    # out of order on purpose: receipts are matched by hash, not position
    receipt(
        H3,
        logs=[
            {
                "logIndex": "0x0",
                "address": PINGER,
                "topics": [TOPIC],
                "data": "0xABCDEF",
            },
            {
                "logIndex": "0x1",
                "address": PINGER,
                "topics": [TOPIC, TOPIC, TOPIC, TOPIC],
                "data": "0x",
            },
        ],
    ),
    receipt(H1, contractAddress=DEPLOYED, gasUsed="0xf9f6"),
    receipt(H2, status="0x0"),
]


def test_decode_block_row() -> None:
    data = decode(RAW, RECEIPTS)
    row = dict(data.block)
    assert row.pop("indexed_at").tzinfo is not None
    assert row == {
        "number": 42,
        "hash": "0x" + "d" * 64,
        "parent_hash": "0x" + "e" * 64,
        "timestamp": 0x6B074D45,
        "tx_count": 3,
        "gas_used": 0x29C02,
        "gas_limit": 0x1C9C380,
        "base_fee_per_gas": BIG,
        "miner": PINGER.lower(),
    }
    assert (data.number, data.hash, data.parent_hash) == (42, "0x" + "d" * 64, "0x" + "e" * 64)


def test_decode_transactions_with_receipt_fields() -> None:
    deploy, transfer, call = decode(RAW, RECEIPTS).transactions
    assert deploy == {
        "hash": H1.lower(),
        "block_number": 42,
        "transaction_index": 0,
        "from_address": SENDER.lower(),
        "to_address": None,
        "value": 0,
        "gas": 0xEA60,
        "gas_price": 0x6FCA5DC2,
        "nonce": 0,
        "status": 1,
        "gas_used": 0xF9F6,
        "contract_address": DEPLOYED.lower(),
    }
    assert transfer["value"] == BIG and isinstance(transfer["value"], int)
    assert transfer["status"] == 0
    assert transfer["contract_address"] is None
    assert call["to_address"] == PINGER.lower()
    assert call["status"] == 1


def test_decode_logs_pads_topics_and_lowercases() -> None:
    first, second = decode(RAW, RECEIPTS).logs
    assert first == {
        "block_number": 42,
        "log_index": 0,
        "transaction_hash": H3.lower(),
        "address": PINGER.lower(),
        "topic0": TOPIC.lower(),
        "topic1": None,
        "topic2": None,
        "topic3": None,
        "data": "0xabcdef",
    }
    assert [second[f"topic{i}"] for i in range(4)] == [TOPIC.lower()] * 4
    assert second["log_index"] == 1


def test_decode_pre_london_block_without_base_fee_or_gas_price() -> None:
    raw = {**RAW, "transactions": [tx(H2, 0)], "number": "0x1"}
    del raw["baseFeePerGas"]
    del raw["transactions"][0]["gasPrice"]  # type: ignore[index]
    data = decode(raw, [receipt(H2)])
    assert data.block["base_fee_per_gas"] is None
    assert data.transactions[0]["gas_price"] is None


def test_decode_empty_block() -> None:
    data = decode({**RAW, "transactions": []}, [])
    assert data.transactions == [] and data.logs == []
    assert data.block["tx_count"] == 0


@pytest.mark.parametrize(
    "receipts",
    [
        RECEIPTS[1:],  # a receipt is missing
        [{**RECEIPTS[0], "logs": [{"logIndex": "0x0"}]}, *RECEIPTS[1:]],  # a log lacks fields
    ],
)
def test_decode_refuses_a_malformed_block_with_rpc_error(receipts: list[dict[str, object]]) -> None:
    with pytest.raises(RpcError, match="block 0x2a has an unexpected shape"):
        decode(RAW, receipts)


LOG = {"logIndex": "0x0", "address": PINGER, "topics": [TOPIC], "data": "0x"}


@pytest.mark.parametrize(
    ("raw", "receipts"),
    [
        ({**RAW, "hash": RAW["hash"] + "00"}, RECEIPTS),  # longer than the column
        ({**RAW, "parentHash": "0x1234"}, RECEIPTS),
        ({**RAW, "miner": PINGER + "ff"}, RECEIPTS),
        ({**RAW, "transactions": [tx(H1 + "0", 0), *RAW["transactions"][1:]]}, RECEIPTS),
        (RAW, [{**RECEIPTS[0], "contractAddress": "0xzz" + "0" * 38}, *RECEIPTS[1:]]),
        (RAW, [{**RECEIPTS[0], "logs": [{**LOG, "topics": [TOPIC] * 5}]}, *RECEIPTS[1:]]),
        (RAW, [{**RECEIPTS[0], "logs": [{**LOG, "topics": [TOPIC + "ab"]}]}, *RECEIPTS[1:]]),
        (RAW, [{**RECEIPTS[0], "logs": [{**LOG, "address": "0x00"}]}, *RECEIPTS[1:]]),
    ],
)
def test_decode_refuses_hashes_and_addresses_of_the_wrong_length(
    raw: dict[str, object], receipts: list[dict[str, object]]
) -> None:
    """A hash is 66 characters and an address 42, the widths of their columns:
    anything else is refused before it reaches the database."""
    with pytest.raises(RpcError, match="unexpected shape"):
        decode(raw, receipts)
