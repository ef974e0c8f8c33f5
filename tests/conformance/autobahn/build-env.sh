#!/usr/bin/env bash
# Build Autobahn|Testsuite's own Python 2.7 virtualenv at $2 from the pinned, hashed
# requirements beside this script, with the Python 2.7 interpreter $1. Idempotent: the
# environment is rebuilt only when the requirements change. Only PyPI is needed (and
# gcc, for wsaccel).
set -euo pipefail
py27=$1
env=$2
here=$(cd "$(dirname "$0")" && pwd)
stamp="$env/.requirements.sha256"
want=$(cat "$here/bootstrap-requirements.txt" "$here/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$env/bin/wstest" ]; then
  exit 0
fi
echo "conformance: building Autobahn|Testsuite's Python 2.7 environment at $env"
rm -rf "$env" "$env.boot"
PYTHONNOUSERSITE=1 "$py27" -m pip install -q --disable-pip-version-check --require-hashes \
  --no-deps --target "$env.boot" -r "$here/bootstrap-requirements.txt"
PYTHONNOUSERSITE=1 PYTHONPATH="$env.boot" "$py27" -m virtualenv -q --no-download "$env"
rm -rf "$env.boot"
"$env/bin/pip" install -q --disable-pip-version-check --require-hashes --no-build-isolation \
  -r "$here/requirements.txt"
echo "$want" > "$stamp"
