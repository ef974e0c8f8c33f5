#!/usr/bin/env bash
# Print a Python 2.7 interpreter's path (PATH, then pyenv's versions), or nothing.
for p in python2.7 python2 "$HOME"/.pyenv/versions/2.7*/bin/python /usr/local/bin/python2.7; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
    command -v "$p"
    exit 0
  fi
done
