"""Reading the operator's files (the chains, contracts and price sources files): the
text, its TOML (or JSON), and the list of top-level tables each holds, every failure a
ConfigError of the caller's kind naming the file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError


def read_document(
    path: str, where: str, error: type[ConfigError], json_suffix: bool = False
) -> Any:
    """The parsed file at `path` (TOML; JSON too when `json_suffix` and it ends in
    `.json`); `error` says, after `where`, why it cannot be read."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{where}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text") from None
    is_json = json_suffix and file.suffix.lower() == ".json"
    try:
        return json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{where}: not valid {'JSON' if is_json else 'TOML'}: {exc}") from None


def top_tables(document: Any, where: str, key: str, error: type[ConfigError]) -> list[Any]:
    """The `[[key]]` tables of a parsed file, which must hold those and nothing else."""
    if not isinstance(document, dict):
        raise error(f"{where}: expected [[{key}]] tables at the top level")
    unknown = sorted(set(document) - {key})
    if unknown:
        raise error(f"{where}: unknown top-level key {unknown[0]!r} (expected [[{key}]])")
    tables = document.get(key)
    if not isinstance(tables, list) or not tables:
        raise error(f"{where}: no [[{key}]] tables")
    return tables
