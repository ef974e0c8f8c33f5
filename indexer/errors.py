"""Errors, split by what the caller should do next.

`RetryableError`: the world may heal (node down, rate limited, database busy); retry
with backoff. `FatalError`: retrying cannot help (bad input, wrong chain, a reorg
deeper than allowed); fail fast with the message.
"""


class ChainpulseError(Exception):
    """Root of every error chainpulse raises on purpose."""


class RetryableError(ChainpulseError):
    """A transient failure: the same call may succeed later."""


class FatalError(ChainpulseError):
    """A permanent failure: retrying the same call gives the same answer."""


class ConfigError(FatalError):
    """A setting is missing or malformed."""


class NodeUnavailable(RetryableError):
    """The JSON-RPC node refused, timed out or answered with a server error."""


class RateLimited(RetryableError):
    """The node answered HTTP 429 or a JSON-RPC rate-limit error."""


class DatabaseBusy(RetryableError):
    """The database is locked or unreachable for now."""


class RpcError(FatalError):
    """The node answered with a JSON-RPC error that retrying will not change."""

    def __init__(self, message: str, code: int | None = None, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data  # the error's `data`, as the node sent it


class BlockNotFound(RetryableError):
    """The node does not (yet) have the block: it may be ahead of a lagging replica."""


class ChainMismatch(FatalError):
    """The node serves another chain than the one this database indexes."""


class ReorgTooDeep(FatalError):
    """A reorg reaches further back than `MAX_REORG_DEPTH`: an operator must look."""


class BadRange(FatalError):
    """A block range that cannot be indexed (reversed, negative, beyond the head)."""
