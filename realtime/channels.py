"""Channel names a client may subscribe to (contract: docs/protocol.md).

`price:<TOKEN>`: TOKEN is 1 to 32 of `A-Z a-z 0-9 . _ -`, case-sensitive.
`user:<sub>`: a JWT subject, joinable only by the holder of a token for that subject.
`blocks:<chainId>`: a chain's `new-block`s and `reorg`s; the id in decimal digits.
`events:<contract>` and `events:<contract>.<event>`: a contract's decoded events (the
event by its name, or its signature where overloaded); the contracts file says which
exist (`realtime.push.subscriptions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from realtime.protocol import INVALID_CHANNEL, INVALID_PAYLOAD

MAX_CHANNEL_LENGTH = 160
MAX_SUBJECT_LENGTH = 128
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,32}")
_EVENTS = re.compile(r"[A-Za-z0-9_-]{1,32}(\.[A-Za-z_$][A-Za-z0-9_$]*(\([A-Za-z0-9,()\[\]]*\))?)?")
_CHAIN_ID = re.compile(r"[1-9][0-9]{0,15}")  # at most 2^53 - 1, checked below
MAX_CHAIN_ID = 2**53 - 1
_SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,%d}" % MAX_SUBJECT_LENGTH)  # noqa: UP031


class ChannelError(ValueError):
    """The payload or the channel name is not acceptable; str() is the client message."""


@dataclass(frozen=True)
class Channel:
    kind: Literal["price", "user", "blocks", "events"]
    key: str  # the token, the subject, the chain id, or `<contract>[.<event>]`

    @property
    def room(self) -> str:
        return f"{self.kind}:{self.key}"


def price_room(token: str) -> str:
    return f"price:{token}"


def user_room(subject: str) -> str:
    return f"user:{subject}"


def valid_subject(subject: Any) -> bool:
    return isinstance(subject, str) and _SUBJECT.fullmatch(subject) is not None


def parse_channel(payload: Any) -> Channel:
    """The channel named by a `subscribe`/`unsubscribe` payload `{channel}`."""
    if not isinstance(payload, dict):
        raise ChannelError(f"{INVALID_PAYLOAD}: expected an object {{channel}}")
    name = payload.get("channel")
    if not isinstance(name, str) or not name:
        raise ChannelError(f"{INVALID_CHANNEL}: channel is missing")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise ChannelError(f"{INVALID_CHANNEL}: longer than {MAX_CHANNEL_LENGTH} characters")
    kind, sep, key = name.partition(":")
    if sep and kind == "price" and _TOKEN.fullmatch(key):
        return Channel("price", key)
    if sep and kind == "user" and valid_subject(key):
        return Channel("user", key)
    if sep and kind == "blocks" and _CHAIN_ID.fullmatch(key) and int(key) <= MAX_CHAIN_ID:
        return Channel("blocks", key)
    if sep and kind == "events" and _EVENTS.fullmatch(key):
        return Channel("events", key)
    raise ChannelError(
        f"{INVALID_CHANNEL}: expected price:<TOKEN>, blocks:<chainId>, events:<contract>"
        "[.<event>] or user:<sub>"
    )
