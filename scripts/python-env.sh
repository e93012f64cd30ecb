#!/usr/bin/env bash
# Creates .venv/ (git-ignored) with what the Python side of the project
# needs, from the machine's pip wheelhouse: grpcio and protobuf for the tests
# that read entries from Python, grpcio-tools for scripts/generate-python.sh,
# and the Python client in clients/python (installed editable, with
# langchain-core) with its test and check tools. Safe to run again: when
# .venv/ already holds exactly these requirements it returns at once.
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
  pytest-asyncio==1.4.0
  pytest-timeout==2.4.0
  mypy==2.4.0
  ruff==0.16.9
  hatchling==1.32.4
  build==1.6.1
  # The bench compares the client with redis-py.
  redis==8.1.0
  # langchain-core's own dependencies, less langchain-protocol, which the
  # wheelhouse lacks (see no_deps).
  httpx==0.28.1
  jsonpatch==1.33
  langsmith==0.14.0
  packaging==26.3
  pydantic==2.13.5
  pyyaml==6.0.3
  tenacity==9.1.4
  typing-extensions==4.16.0
  uuid-utils==0.17.1
)
# Installed without their dependencies. langchain-core requires
# langchain-protocol, absent from the wheelhouse; what the client and its
# tests use (caches, outputs, messages, load, globals, FakeListLLM) imports
# without it.
no_deps=(
  langchain-core==1.6.5
)
client=clients/python

venv=.venv
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"
# The client's pyproject.toml is part of the stamp: the editable install
# holds its metadata, while its code is read from the tree.
client_metadata=""
[ -f "$client/pyproject.toml" ] && client_metadata="$(cat "$client/pyproject.toml")"
wanted="$(printf '%s\n' "${requirements[@]}" -- "${no_deps[@]}" -- "$client_metadata" | sha256sum | cut -d' ' -f1)"

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
pip=("$venv/bin/python" -m pip install -qq --disable-pip-version-check --retries 0)
"${pip[@]}" "${requirements[@]}"
"${pip[@]}" --no-deps "${no_deps[@]}"
installed=("${requirements[@]}" "${no_deps[@]}")
if [ -n "$client_metadata" ]; then
  # Editable, so that the tests and mypy see the tree as it is; hatchling is
  # installed above, so the build needs no isolated environment of its own.
  "${pip[@]}" --no-deps --no-build-isolation --editable "./$client[langchain]"
  installed+=("-e $client[langchain]")
fi
printf '%s\n' "$wanted" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "python-env: $venv ready: ${installed[*]}"
