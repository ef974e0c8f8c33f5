"""The demo page's static files: `realtime/web/` (HTML, CSS, JavaScript), served at `/`
and `/static/<name>`, and socket.io-client's browser build, which a build step copies
from `node_modules` into the git-ignored `realtime/web/vendor/` (`make assets`, part of
`make dev` and `make test`) so that a wheel built from a checkout carries it.

Files are read once, from the installed package (importlib.resources), and only the
names found there are served: no path from a request reaches the file system.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
CLIENT = "vendor/socket.io.min.js"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load() -> dict[str, Asset]:
    """Every servable file under `realtime/web/`, by its path there (`app.js`)."""
    root = resources.files("realtime") / "web"
    found: dict[str, Asset] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{name}/")
            else:
                suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
                if suffix in TYPES:
                    found[name] = Asset(child.read_bytes(), TYPES[suffix])

    walk(root, "")
    if CLIENT not in found:
        log.warning(
            "the demo page's socket.io-client (%s) is missing: run `make assets` "
            "(it copies it from node_modules)",
            CLIENT,
        )
    return found
