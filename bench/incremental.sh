#!/usr/bin/env bash
# Incremental builds (issue 3): how long kiln takes to build examples/debian again with no
# change, and how many VMs a product-only change boots. Writes a Markdown table to
# bench/results/incremental-<date>.md.
#
#   bench/incremental.sh [RUNS]      (default 5 runs of each case)
#
# BENCH_HOME (default /tmp/kiln-bench) is the store; the first run builds the example there
# once (a few minutes under TCG), later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
home=${BENCH_HOME:-/tmp/kiln-bench}
kiln=.build/release/kiln
swift build -c release >/dev/null
mkdir -p bench/results
out=bench/results/incremental-$(date -u +%Y%m%d-%H%M%S).md

# The starting point: every image of the example built.
"$kiln" build examples/debian --home "$home" >/dev/null 2>&1

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f | %.2f | %.2f", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
now() { date +%s.%N; }

no_change=()
no_change_vms=0
for _ in $(seq "$runs"); do
  start=$(now)
  "$kiln" build examples/debian --home "$home" >/tmp/kiln-bench.out 2>/tmp/kiln-bench.err
  no_change+=("$(elapsed "$start")")
  no_change_vms=$((no_change_vms + $(grep -c "booting VM" /tmp/kiln-bench.err || true)))
done

# A product-only change: the product template edited in a copy of the example (build keys
# hold no absolute path, so the copy's base and app layers are the ones already built).
copy=$(mktemp -d /tmp/kiln-bench-example.XXXXXX)
trap 'rm -rf "$copy"' EXIT
cp -r examples/debian/. "$copy"
product=()
product_vms=()
for i in $(seq "$runs"); do
  sed -i "s/release: {default: .*}/release: {default: \"bench-$(date +%s)-$i\"}/" "$copy/product.yaml"
  start=$(now)
  "$kiln" build "$copy" --home "$home" >/tmp/kiln-bench.out 2>/tmp/kiln-bench.err
  product+=("$(elapsed "$start")")
  product_vms+=("$(grep -c "booting VM" /tmp/kiln-bench.err || true)")
done

{
  echo "# Incremental builds of examples/debian"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); accelerator: ${KILN_ACCEL:-probed (TCG here)}"
  echo "- kiln: $(git rev-parse --short HEAD), release build; runs per case: $runs"
  echo
  echo "| case | wall min (s) | median (s) | max (s) | VMs booted per run |"
  echo "|---|---|---|---|---|"
  echo "| rebuild, no change | $(printf '%s\n' "${no_change[@]}" | stats) | $((no_change_vms / runs)) |"
  echo "| product template changed | $(printf '%s\n' "${product[@]}" | stats) | $(printf '%s ' "${product_vms[@]}") |"
  echo
  echo "Goal (issue 3): no change < 2 s and no VM; a product-only change boots exactly one VM."
} | tee "$out"
