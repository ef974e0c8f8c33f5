"""Following the chain head: `chainpulse follow` (one active per deployment)."""
