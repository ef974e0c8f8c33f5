"""Every process's settings in one object, for the command line and `chainpulse dev`.

Each part declares its own (`indexer.config`, `workers.config`, `follower.config`,
`realtime.config`); this class is their union, so one environment configures them all
and each part is handed the whole (it reads only its own fields).
"""

from __future__ import annotations

from dataclasses import dataclass

from follower.config import FollowerSettings
from realtime.config import RealtimeSettings
from workers.config import WorkerSettings


@dataclass(frozen=True)
class Settings(RealtimeSettings, FollowerSettings, WorkerSettings):
    """Every setting chainpulse reads."""
