#!/usr/bin/env bash
# B14: kiln serve on a 100,000-image catalog (docs/serve.md). wrk loads the API's page of a
# family's newest images (after its first request, an answer kept until the catalog changes),
# then random pages all through the family (1,802 pages: most are made from the catalog, as
# kiln keeps the 256 latest answers); curl times the families page, the first render (which
# counts every image) and the next ones.
#
#   bench/serve.sh             writes bench/results/serve-latest.md (and a dated copy)
#
# The catalog: 100 families, one of 90,100 images and 99 of 100 (kiln-bench populate), on
# SQLite. The server and wrk share the machine's cores, as on a laptop. BENCH_SECONDS (default
# 15) is each wrk run's length; BENCH_CONNECTIONS (default 32) its open connections.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
repo=$PWD
seconds=${BENCH_SECONDS:-15}
connections=${BENCH_CONNECTIONS:-32}
work=$(mktemp -d /tmp/kiln-serve-bench.XXXXXX)
serve_pid=
cleanup() {
  [ -z "$serve_pid" ] || { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
# The Makefile's one release build (kiln and kiln-bench among its products).
make -s build-release >/dev/null
mkdir -p bench/results
kiln=$repo/.build/release/kiln

echo "B14: filling a catalog with 100,000 images (not timed)" >&2
"$repo/.build/release/kiln-bench" populate "$work/home" 100 100 90100 >/dev/null
total=$(sqlite3 "$work/home/catalog.sqlite" "SELECT COUNT(*) FROM image")
[ "$total" -eq 100000 ] || { echo "B14: the catalog holds $total images, not 100000" >&2; exit 1; }

"$kiln" serve --home "$work/home" --listen 127.0.0.1:0 >"$work/serve.log" 2>&1 &
serve_pid=$!
url=
for _ in $(seq 200); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.log" || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "B14: kiln serve did not start: $(cat "$work/serve.log")" >&2; exit 1; }

# The families page: the first render after start, then 20 more.
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
first=$(ms "$(curl -fsS -o "$work/families.html" -w '%{time_total}' "$url/")")
grep -q "100 families, 100000 images" "$work/families.html" || { echo "B14: the families page does not count the catalog" >&2; exit 1; }
pages=()
for _ in $(seq 20); do pages+=("$(ms "$(curl -fsS -o /dev/null -w '%{time_total}' "$url/")")"); done
page_median=$(printf '%s\n' "${pages[@]}" | median)

# The API: the newest 50 of the long family, then random pages of it.
api="$url/api/families/fam0/images?limit=50"
curl -fsS "$api" | jq -e '.total == 90100 and (.images | length) == 50' >/dev/null
curl -fsS "$url/api/families/fam0/images?limit=50&offset=90050" | jq -e '(.images | length) == 50' >/dev/null
cat >"$work/random.lua" <<'LUA'
math.randomseed(20261205)
request = function()
  return wrk.format("GET", "/api/families/fam0/images?limit=50&offset=" .. (math.random(0, 1801) * 50))
end
LUA
# wrk's latency in ms from its "99%  12.34ms" line (us, ms or s).
p99() { awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v); printf "%.2f", v * (u == "us" ? 0.001 : (u == "s" ? 1000 : 1)) }' "$1"; }
rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }
errors() { awk '/Non-2xx|Socket errors/ { print }' "$1"; }
wrk -t2 -c"$connections" -d"${seconds}s" --latency "$api" >"$work/wrk-first.txt"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/random.lua" "$url" >"$work/wrk-random.txt"
for f in "$work/wrk-first.txt" "$work/wrk-random.txt"; do
  [ -z "$(errors "$f")" ] || { echo "B14: wrk saw errors: $(errors "$f")" >&2; exit 1; }
done

first_rps=$(rps "$work/wrk-first.txt")
first_p99=$(p99 "$work/wrk-first.txt")
random_rps=$(rps "$work/wrk-random.txt")
random_p99=$(p99 "$work/wrk-random.txt")
at_least() { awk -v v="$1" -v goal="$2" 'BEGIN { print (v >= goal ? "met" : sprintf("missed by %.0f%%", (1 - v / goal) * 100)) }'; }
stamp=$(date -u +%Y%m%d-%H%M%S)
{
  echo "# B14: kiln serve on a 100,000-image catalog (bench/serve.sh)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r); server and load generator on the same cores"
  echo "- catalog: SQLite, 100,000 images in 100 families (fam0: 90,100 versions); release build"
  echo "- load: $(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }'), 2 threads, $connections connections, ${seconds} s per URL"
  echo
  echo "| case | measured | goal | result |"
  echo "|---|---|---|---|"
  echo "| \`/api/families/fam0/images?limit=50\`: requests/s | $first_rps | ≥ 1000 | $(at_least "$first_rps" 1000) |"
  echo "| same: p99 latency (ms) | $first_p99 | < 50 | $(verdict "$first_p99" 50) |"
  echo "| random pages \`…?limit=50&offset=0…90050\` (mostly made from the catalog): requests/s | $random_rps | | |"
  echo "| same: p99 latency (ms) | $random_p99 | | |"
  echo "| families page, first render after start (ms) | $first | | |"
  echo "| families page, 20 renders: min / median / max (ms) | $(printf '%s\n' "${pages[@]}" | stats " / ") | < 100 (median) | $(verdict "$page_median" 100) |"
} | tee "bench/results/serve-$stamp.md" >bench/results/serve-latest.md
cat bench/results/serve-latest.md
