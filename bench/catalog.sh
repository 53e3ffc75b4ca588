#!/usr/bin/env bash
# Catalog operations at scale (issue 4): writes bench/results/catalog-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product kiln-bench >/dev/null
out=bench/results/catalog-$(date -u +%Y%m%d-%H%M%S).md
{
  echo "# Catalog operations at scale"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- kiln: $(git rev-parse --short HEAD), release build; SQLite catalog (GRDB, WAL) in a temporary store"
  echo
  echo "| operation | min | median | max | goal |"
  echo "|---|---|---|---|---|"
  .build/release/kiln-bench
} | tee "$out"
