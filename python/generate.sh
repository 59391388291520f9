#!/usr/bin/env bash
# Regenerates the protobuf and gRPC stubs of tunefleet.v1 into the package (or into the folder
# given as $1, which the stub test uses to check that the committed stubs are current).
# Needs grpcio-tools: pip install 'grpcio-tools==1.85.1'.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
python="${PYTHON:-python3}"
mkdir -p "$out/tunefleet/v1"
"$python" -m grpc_tools.protoc -I "$here/../proto" \
  --python_out="$out" --grpc_python_out="$out" \
  "$here/../proto/tunefleet/v1/tunefleet.proto"
touch "$out/tunefleet/v1/__init__.py"
