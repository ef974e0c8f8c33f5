"""The `/realtime` namespace handlers (contract: docs/protocol.md).

Handlers are thin: validate, call the feed or the bus, answer. Per connection the
server keeps one small `ClientState` (subject, auth error, price channels, expiry).

Token expiry while connected: at `exp` the client leaves `user:<sub>`, gets
`exception` "Token expired", and its guarded actions answer "Invalid token" from then
on; public feeds continue. With REQUIRE_AUTH=true the client is disconnected instead
(it must reconnect with a fresh token).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from realtime import protocol
from realtime.auth import InvalidToken, TokenValidator
from realtime.channels import (
    MAX_CHANNEL_LENGTH,
    ChannelError,
    parse_channel,
    user_room,
    valid_subject,
)
from realtime.config import RealtimeSettings
from realtime.metrics import Metrics
from realtime.push.feed import Feed
from realtime.push.subscriptions import FilterError, Subscription
from realtime.ratelimit import LogThrottle, SlidingWindowLimiter
from realtime.transport.fanout import Fanout, Payload, Timer, Unavailable

log = logging.getLogger(__name__)

MAX_PRIVATE_MESSAGE = 4_096  # characters
MAX_PING_ARGUMENTS = 8  # the reference's ping ignores its arguments; so does ours, up to this
MAX_HEIGHT = 2**63 - 1  # the largest block number a database column holds


class ClientState:
    __slots__ = ("sub", "auth_error", "expires", "channels", "subscriptions", "timer")

    def __init__(self) -> None:
        self.sub: str | None = None
        self.auth_error: str | None = None
        self.expires: float | None = None  # seconds since the epoch
        self.channels: set[str] = set()
        self.subscriptions: dict[str, Subscription] = {}  # contract event ones, by id
        self.timer: Timer | None = None


class Refused(Exception):
    def __init__(self, message: str, reason: str, channel: str | None = None) -> None:
        """`channel`: the subscription the refusal is about, named in the `exception`."""
        super().__init__(message)
        self.reason = reason
        self.channel = channel


Handler = Callable[..., Payload | None]


class Gateway:
    """The `/realtime` handlers (`Handlers` of the transport), over `fanout`."""

    def __init__(
        self,
        fanout: Fanout,
        settings: RealtimeSettings,
        feed: Feed,
        metrics: Metrics,
        limiter: SlidingWindowLimiter,
    ) -> None:
        self.fanout = fanout
        self.settings = settings
        self.feed = feed
        self.metrics = metrics
        self.validator = TokenValidator(settings)
        self.limiter = limiter
        self.clients: dict[str, ClientState] = {}
        self._resume: dict[str, tuple[object, object]] = {}
        self._token_log = LogThrottle(log)
        metrics.track("clients", lambda: len(self.clients))
        metrics.track("rate limiter", lambda: len(self.limiter))
        self.handlers: dict[str, Handler] = {
            "subscribe": self._guarded(self.on_subscribe),
            "unsubscribe": self._guarded(self.on_unsubscribe),
            "ping": self._guarded(self.on_ping, arguments=MAX_PING_ARGUMENTS),
            "private-message": self._guarded(self.on_private_message),
        }

    # connection lifecycle -----------------------------------------------------------

    def allow(self, sid: str) -> bool:
        return self.limiter.allow(sid)

    def connect(self, sid: str, auth: object) -> str | None:
        request = auth if isinstance(auth, dict) else {}
        state = ClientState()
        token = request.get("token")
        if token is None or token == "":
            state.auth_error = protocol.UNAUTHORIZED
        else:
            try:
                identity = self.validator.validate(token)
            except InvalidToken as exc:
                # the kind only: the reason can quote the token's own (attacker's) text
                self._token_log.info(exc.kind, f"invalid token ({exc.kind})")
                state.auth_error = protocol.INVALID_TOKEN
            else:
                state.sub, state.expires = identity.sub, identity.exp
        if state.auth_error and self.settings.require_auth:
            self.metrics.refuse("auth")
            return state.auth_error
        self.clients[sid] = state
        if state.sub is not None:
            self.fanout.join(sid, user_room(state.sub))
            if state.expires is not None:
                delay = max(0.0, state.expires - time.time())
                state.timer = self.fanout.call_later(delay, lambda: self._expire(sid, state))
        if "lastBlock" in request:
            self._resume[sid] = (request.get("lastBlock"), request.get("lastBlockHash"))
        return None

    def connected(self, sid: str) -> None:
        """Runs right after the CONNECT packet is queued, before anything can yield."""
        self.metrics.connected.inc()
        self.feed.emit(sid, "connected", protocol.connected(sid))
        request = self._resume.pop(sid, None)
        if request is None:
            self.feed.join_live(sid)
            return
        height = _resume_height(*request)
        if height is None:
            self.metrics.refuse("invalid resume")
            self.feed.emit(sid, "exception", protocol.exception(BAD_RESUME))
            self.feed.join_live(sid)
            return
        hash_ = request[1] if isinstance(request[1], str) else None
        self.fanout.spawn(lambda: self.feed.resume(sid, height, hash_))

    def disconnected(self, sid: str) -> None:
        state = self.clients.pop(sid, None)
        if state is not None:
            self.metrics.connected.dec()
            if state.timer is not None:
                state.timer.cancel()
        self._resume.pop(sid, None)
        self.limiter.forget(sid)
        self.feed.forget(sid)

    def _expire(self, sid: str, state: ClientState) -> None:
        if self.clients.get(sid) is not state or state.sub is None:
            return
        self.fanout.leave(sid, user_room(state.sub))
        state.sub, state.auth_error, state.timer = None, protocol.INVALID_TOKEN, None
        self.feed.emit(sid, "exception", protocol.exception(protocol.TOKEN_EXPIRED))
        if self.settings.require_auth:
            self.fanout.disconnect(sid)

    def event(self, sid: str, name: str, args: Sequence[object]) -> Payload | None:
        handler = self.handlers.get(name)
        if handler is None:
            return self.on_unknown(sid, name)
        return handler(sid, *args)

    # events -------------------------------------------------------------------------

    def _guarded(self, handler: Callable[..., Payload | None], arguments: int = 1) -> Handler:
        """Turn `Refused` into an `exception` event and an ack `{success: false}`; an
        event with more than `arguments` arguments is refused before `handler` runs."""

        def run(sid: str, *args: object) -> Payload | None:
            state = self.clients.get(sid)
            if state is None:
                return None
            try:
                if len(args) > arguments:
                    raise Refused(
                        f"{protocol.INVALID_PAYLOAD}: expected at most {arguments} argument",
                        "invalid payload",
                    )
                return handler(sid, state, *args)
            except Refused as refusal:
                self.metrics.refuse(refusal.reason)
                error = protocol.exception(str(refusal), refusal.channel)
                self.feed.emit(sid, "exception", error)
                return protocol.refused(str(refusal))

        return run

    def _identity(self, state: ClientState) -> str:
        if state.sub is not None and state.expires is not None and time.time() >= state.expires:
            state.sub, state.auth_error = None, protocol.INVALID_TOKEN
        if state.sub is None:
            error = state.auth_error or protocol.UNAUTHORIZED
            raise Refused(error, "unauthorized" if error == protocol.UNAUTHORIZED else "token")
        return state.sub

    def on_subscribe(self, sid: str, state: ClientState, data: object = None) -> Payload:
        try:
            channel = parse_channel(data)
        except ChannelError as exc:
            raise Refused(str(exc), "invalid channel", _named(data)) from None
        if channel.kind == "user":
            if self._identity(state) != channel.key:
                raise Refused(protocol.FORBIDDEN, "forbidden", channel.room)
            self.fanout.join(sid, channel.room)
            return {"success": True, "channel": channel.room}
        if channel.room not in state.channels and len(state.channels) >= self.settings.max_rooms:
            raise Refused(
                f"{protocol.TOO_MANY_ROOMS}: at most {self.settings.max_rooms}",
                "too many rooms",
                channel.room,
            )
        if channel.kind == "blocks":
            return self._subscribe_blocks(sid, state, channel.room, int(channel.key), data)
        if channel.kind == "events":
            return self._subscribe_events(sid, state, channel.room, channel.key, data)
        snapshot = self.feed.snapshot(channel.key)  # may read the database (and yield)
        if self.clients.get(sid) is not state:
            return protocol.refused("disconnected")
        if channel.room not in state.channels and len(state.channels) >= self.settings.max_rooms:
            # checked again: other subscribes of this client may have joined during the read
            raise Refused(
                f"{protocol.TOO_MANY_ROOMS}: at most {self.settings.max_rooms}",
                "too many rooms",
                channel.room,
            )
        state.channels.add(channel.room)
        self.fanout.join(sid, channel.room)
        if snapshot is not None:
            self.feed.emit(sid, "price-update", protocol.price_update(snapshot, snapshot=True))
        return {"success": True, "channel": channel.room}

    def _subscribe_blocks(
        self, sid: str, state: ClientState, room: str, chain_id: int, data: object
    ) -> Payload:
        """`blocks:<chainId>`, resumed from `lastBlock` (and `lastBlockHash`) if given."""
        if not self.feed.known_chain(chain_id):
            raise Refused(
                f"{protocol.INVALID_CHANNEL}: no chain {chain_id}", "invalid channel", room
            )
        assert isinstance(data, dict)  # parse_channel checked it
        last_hash = data.get("lastBlockHash")
        height = _resume_height(data.get("lastBlock"), last_hash)
        if "lastBlock" in data and height is None:
            raise Refused(BAD_RESUME, "invalid resume", room)
        if room in state.channels and "lastBlock" not in data:
            return {"success": True, "channel": room}
        state.channels.add(room)
        if height is None:
            self.feed.subscribe_blocks(sid, chain_id, None, None)
        else:
            hash_ = last_hash if isinstance(last_hash, str) else None
            self.fanout.spawn(lambda: self.feed.subscribe_blocks(sid, chain_id, height, hash_))
        return {"success": True, "channel": room}

    def _subscribe_events(
        self, sid: str, state: ClientState, room: str, key: str, data: object
    ) -> Payload:
        """`events:<contract>[.<event>]` with an optional `filter`, resumed from
        `lastBlock` (and `lastBlockHash`) if given; the ack names the subscription's id."""
        assert isinstance(data, dict)  # parse_channel checked it
        try:
            sub = self.feed.router.subscription(key, data.get("filter"))
        except FilterError as exc:
            message = str(exc)
            reason = "invalid filter" if message.startswith(protocol.INVALID_FILTER) else (
                "invalid channel"
            )  # fmt: skip
            raise Refused(message, reason, room) from None
        last_hash = data.get("lastBlockHash")
        height = _resume_height(data.get("lastBlock"), last_hash)
        if "lastBlock" in data and height is None:
            raise Refused(BAD_RESUME, "invalid resume", room)
        ack: Payload = {"success": True, "channel": room, "id": sub.id}
        if sub.room in state.channels and "lastBlock" not in data:
            return ack
        if sub.room not in state.channels and len(state.channels) >= self.settings.max_rooms:
            raise Refused(
                f"{protocol.TOO_MANY_ROOMS}: at most {self.settings.max_rooms}",
                "too many rooms",
                room,
            )
        state.channels.add(sub.room)
        state.subscriptions[sub.id] = sub
        if height is None:
            self.feed.subscribe_events(sid, sub, None, None)
        else:
            hash_ = last_hash if isinstance(last_hash, str) else None
            self.fanout.spawn(lambda: self.feed.subscribe_events(sid, sub, height, hash_))
        return ack

    def on_unsubscribe(self, sid: str, state: ClientState, data: object = None) -> Payload:
        if isinstance(data, dict) and "id" in data and "channel" not in data:
            sub_id = data["id"]
            held = state.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
            if held is None:
                raise Refused(
                    f"{protocol.INVALID_PAYLOAD}: no subscription of this id", "invalid payload"
                )
            state.channels.discard(held.room)
            self.feed.unsubscribe_events(sid, held)
            return {"success": True}
        try:
            channel = parse_channel(data)
        except ChannelError as exc:
            raise Refused(str(exc), "invalid channel", _named(data)) from None
        if channel.kind == "events":
            assert isinstance(data, dict)
            try:
                sub = self.feed.router.subscription(channel.key, data.get("filter"))
            except FilterError as exc:
                raise Refused(str(exc), "invalid filter", channel.room) from None
            state.channels.discard(sub.room)
            state.subscriptions.pop(sub.id, None)
            self.feed.unsubscribe_events(sid, sub)
            return {"success": True}
        state.channels.discard(channel.room)
        if channel.kind == "blocks":
            self.feed.unsubscribe_blocks(sid, int(channel.key))
        else:
            self.fanout.leave(sid, channel.room)
        return {"success": True}

    def on_ping(self, sid: str, state: ClientState, *_: object) -> None:
        self.feed.emit(sid, "pong", protocol.pong())

    def on_private_message(self, sid: str, state: ClientState, data: object = None) -> Payload:
        sender = self._identity(state)
        if not isinstance(data, dict) or not valid_subject(data.get("to")):
            raise Refused(
                f"{protocol.INVALID_PAYLOAD}: expected {{to, message}}", "invalid payload"
            )
        message = data.get("message")
        if not isinstance(message, str) or len(message) > MAX_PRIVATE_MESSAGE:
            raise Refused(
                f"{protocol.INVALID_PAYLOAD}: message must be a string of at most "
                f"{MAX_PRIVATE_MESSAGE} characters",
                "invalid payload",
            )
        payload = protocol.private_message(sender, message)
        try:
            self.fanout.publish(user_room(str(data["to"])), "private-message", payload)
        except Unavailable as exc:
            log.warning("private message not sent: %s", exc)
            raise Refused(protocol.BUS_UNAVAILABLE, "bus unavailable") from None
        return {"success": True}

    def on_unknown(self, sid: str, event: str) -> Payload | None:
        if sid not in self.clients:
            return None
        message = f"{protocol.UNKNOWN_EVENT}: {event[:64]}"
        self.metrics.refuse("unknown event")
        self.feed.emit(sid, "exception", protocol.exception(message))
        return protocol.refused(message)


BAD_RESUME = (
    f"{protocol.INVALID_PAYLOAD}: lastBlock must be an integer from 0 to 2^63-1, "
    "lastBlockHash a string"
)


def _resume_height(last_block: object, last_hash: object) -> int | None:
    """`lastBlock` when it and `lastBlockHash` are well formed, else None."""
    if (
        isinstance(last_block, int)
        and not isinstance(last_block, bool)
        and 0 <= last_block <= MAX_HEIGHT
        and (last_hash is None or isinstance(last_hash, str))
    ):
        return last_block
    return None


def _named(data: object) -> str | None:
    """The channel a malformed subscribe names, when it names one (a short string)."""
    if isinstance(data, dict):
        name = data.get("channel")
        if isinstance(name, str) and 0 < len(name) <= MAX_CHANNEL_LENGTH:
            return name
    return None
