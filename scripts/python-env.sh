#!/usr/bin/env bash
# Creates .venv/ (git-ignored) with the Python packages the Python tests
# need, from the machine's pip wheelhouse. Safe to run again: when .venv/
# already holds exactly these requirements it returns at once.
#
#   bash scripts/python-env.sh     # then .venv/bin/python
#
# PYTHON names the interpreter to build the venv from (default python3); it
# must be 3.11, the version the wheelhouse has grpcio-tools wheels for.
set -euo pipefail
cd "$(dirname "$0")/.."

# protobuf 7.36: grpcio-tools 1.84 requires protobuf >=7.35.1,<8.
requirements=(
  grpcio==1.84.0
  grpcio-tools==1.84.0
  protobuf==7.36.2
  pytest==9.1.1
)

venv=.venv
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"
wanted="$(printf '%s\n' "${requirements[@]}" | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
  && "$venv/bin/python" -c '' 2>/dev/null; then
  exit 0
fi

if ! command -v "$python" >/dev/null; then
  echo "python-env: $python not found: install Python 3.11 (apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "python-env: $python is Python $("$python" -c 'import platform; print(platform.python_version())'), not 3.11: set PYTHON to a Python 3.11" >&2
  exit 1
fi
# Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "python-env: $python has no venv module: apt-get install python3-venv" >&2
  exit 1
fi

# A venv whose interpreter no longer runs (its Python was removed or moved)
# cannot be repaired in place.
if [ -e "$venv" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"

rm -f "$stamp"
# The wheelhouse is pip's configured index; --retries 0 keeps pip from
# waiting on any other index it cannot reach.
"$venv/bin/python" -m pip install -qq --disable-pip-version-check --retries 0 "${requirements[@]}"
printf '%s\n' "$wanted" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "python-env: $venv ready: ${requirements[*]}"
