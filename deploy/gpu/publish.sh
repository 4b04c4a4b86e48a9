#!/usr/bin/env bash
# Self-contained linux-x64 single-file (compressed) publish of tests/Gpu.Runner for a machine with CUDA's driver but no
# .NET (BENCHMARKS.md "GPU (ILGPU)"). Not trimmed: ILGPU compiles kernels from their IL by reflection.
# Usage: deploy/gpu/publish.sh [out-dir]   (default: artifacts/gpu, ignored by git; carried to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-artifacts/gpu}"
dotnet publish tests/Gpu.Runner/Gpu.Runner.csproj -c Release -r linux-x64 --self-contained true -o "$out" --nologo -v quiet \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true \
  -p:DebugType=none -p:GenerateDocumentationFile=false
bytes=$(stat -c %s "$out/Loom.Gpu.Runner")
echo "published $out/Loom.Gpu.Runner: $((bytes / 1048576)) MiB"
if [ "$bytes" -ge $((64 * 1048576)) ]; then echo "larger than the 64 MiB a device call carries" >&2; exit 1; fi
