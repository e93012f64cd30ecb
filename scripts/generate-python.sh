#!/usr/bin/env bash
# Regenerates the Python client's generated code from proto/ into
# clients/python/src/llmcache/v1/: the message classes (cache_pb2.py), their
# type stubs (cache_pb2.pyi) and the gRPC stubs (cache_pb2_grpc.py), with
# the protoc and plugin that grpcio-tools bundles in .venv/ (made by
# scripts/python-env.sh). The output is committed; the same proto/ and
# grpcio-tools give the same bytes on every run, so CI can regenerate and
# check that git sees no change:
#
#   bash scripts/generate-python.sh
#   git status --porcelain -- clients/python/src/llmcache/v1   # empty
#
# The modules sit where protoc puts them for the contract's package
# (llmcache.v1): code generated from proto/ by anyone imports as
# llmcache.v1.cache_pb2, and the descriptor keeps its name,
# "llmcache/v1/cache.proto".
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/python-env.sh
python=.venv/bin/python
out=clients/python/src/llmcache/v1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# google/protobuf/struct.proto, as grpcio-tools ships it.
well_known="$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
"$python" -m grpc_tools.protoc -Iproto "-I$well_known" \
  --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" \
  proto/llmcache/v1/cache.proto

printf '"""Generated from proto/llmcache/v1/cache.proto by scripts/generate-python.sh. DO NOT EDIT!"""\n' \
  >"$work/llmcache/v1/__init__.py"
rm -rf "$out"
mkdir -p "$out"
for file in "$work"/llmcache/v1/*; do
  install -m 0644 "$file" "$out/"
done
echo "generate-python: $out from proto/llmcache/v1/cache.proto"
