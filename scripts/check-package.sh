#!/usr/bin/env bash
# Installs llmcache the way its users do, outside this repository, and runs
# the README's examples against a server started from that install:
#   - the npm tarball (npm pack), with production dependencies only, into an
#     empty project that also installs @langchain/core (an optional peer);
#   - the Python wheel, into a fresh venv.
# Needs network access to the npm registry and the machine's pip wheelhouse.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "-- npm pack"
tarball="$(cd "$repo" && npm pack --silent --pack-destination "$work" | tail -n 1)"
tar -tzf "$work/$tarball" > "$work/files.txt"
echo "$tarball: $(wc -l < "$work/files.txt") files, $(du -k "$work/$tarball" | cut -f1) KiB"
if grep -Ev '^package/(dist/(src|gen)/|gen/|proto/|README\.md$|LICENSE$|package\.json$)' "$work/files.txt"; then
  echo "the tarball holds files it should not (above)" >&2
  exit 1
fi

echo "-- an empty project installs it with --omit=dev"
mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --omit=dev --no-audit --no-fund "$work/$tarball" "@langchain/core@^1.4.0" >/dev/null
cp "$repo/examples/"*.mjs .

echo "-- llmcache serve, from the install's bin"
# The bin itself, not npx: npx's pid is not the server's, and killing it would leave the server running.
node_modules/.bin/llmcache serve --port 0 > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
address="$(sed -n 's/^llmcache listening on \([^ ]*\).*/\1/p' "$work/server.out")"
[ -n "$address" ] || { cat "$work/server.err" >&2; echo "the installed server did not start" >&2; exit 1; }

echo "-- the README's TypeScript examples"
for example in quick-start.mjs langchain-chat.mjs; do
  LLMCACHE_ADDRESS="$address" node "$example"
done
npx --no-install llmcache --version

if [ -d "$repo/clients/python" ]; then
  echo "-- the Python wheel, in a fresh venv"
  "$repo/.venv/bin/python" -m build --wheel --no-isolation --outdir "$work/wheel" "$repo/clients/python" >/dev/null
  python3 -m venv "$work/pyvenv"
  "$work/pyvenv/bin/pip" install --quiet --retries 0 "$work/wheel/"*.whl
  # langchain-core's own requirement langchain-protocol is not in the wheelhouse (see README, Development).
  "$work/pyvenv/bin/pip" install --quiet --retries 0 --no-deps "langchain-core==1.6.5"
  "$work/pyvenv/bin/pip" install --quiet --retries 0 jsonpatch langsmith packaging pydantic pyyaml tenacity typing-extensions uuid-utils httpx
  LLMCACHE_ADDRESS="$address" "$work/pyvenv/bin/python" "$repo/examples/langchain_llm.py"
fi
echo "-- the package installs and runs as its README says"
