#!/usr/bin/env bash
# Self-contained linux-x64 single-file publish of tests/Gpu.Runner for a machine with CUDA's driver but no .NET
# (BENCHMARKS.md "GPU (ILGPU)"), xz-compressed so that it and the working tree fit the 64 MiB a device call carries
# (the bundle's own compression leaves 50 MiB; xz over the uncompressed bundle about 33 MiB).
# Not trimmed: ILGPU compiles kernels from their IL by reflection. run-checks.sh unpacks it on the device machine.
# Usage: deploy/gpu/publish.sh [out-dir]   (default: artifacts/gpu, ignored by git; carried to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-artifacts/gpu}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
dotnet publish tests/Gpu.Runner/Gpu.Runner.csproj -c Release -r linux-x64 --self-contained true -o "$stage" --nologo -v quiet \
  -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true \
  -p:DebugType=none -p:GenerateDocumentationFile=false
rm -rf "$out"; mkdir -p "$out"
xz -T0 -9 -c "$stage/Loom.Gpu.Runner" > "$out/Loom.Gpu.Runner.xz"
bytes=$(stat -c %s "$out/Loom.Gpu.Runner.xz")
tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
echo "published $out/Loom.Gpu.Runner.xz: $((bytes / 1048576)) MiB (+ $((tree / 1048576)) MiB of tracked files travel with it)"
if [ $((bytes + tree)) -ge $((64 * 1048576)) ]; then echo "larger than the 64 MiB a device call carries" >&2; exit 1; fi
