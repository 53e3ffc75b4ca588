#!/usr/bin/env bash
# B13: a runner with an empty store pulls the examples/debian chain (shop-web, the blobs under
# it down to the source disk) from a loopback docker-registry, beside `skopeo copy` of the same
# blobs in the same run; then a fresh runner's up-to-date job (docs/remote.md).
#
#   bench/remote.sh            writes bench/results/remote-latest.md (and a dated copy)
#
# BENCH_HOME (default /tmp/kiln-bench) is the store examples/debian is built into once (not
# timed) and pushed from; BENCH_RUNS (default 5) the rounds, kiln and skopeo alternating.
# kiln's pull ends verified as a build needs it (every layer hashed as it arrives, the chain
# checked); skopeo checks each layer's digest too. Both talk plain HTTP to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
home=${BENCH_HOME:-/tmp/kiln-bench}
runs=${BENCH_RUNS:-5}
work=$(mktemp -d /tmp/kiln-remote-bench.XXXXXX)
registry_pid=
cleanup() {
  [ -z "$registry_pid" ] || { kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
kiln=$repo/.build/release/kiln
# The Makefile's one release build.
make -s build-release >/dev/null
mkdir -p bench/results

source bench/lib.sh

echo "building examples/debian into $home once (not timed)" >&2
"$kiln" build examples/debian --home "$home" >&2
image=$("$kiln" resolve shop-web --home "$home")
catalog="sqlite:$home/catalog.sqlite"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log: {level: error, formatter: text}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
remote=oci://127.0.0.1:$port/bench/kiln
"$kiln" push "$image" --home "$home" --remote "$remote" >&2

# The chain's digests, as a pull reports them.
"$kiln" pull "$image" --home "$work/probe" --catalog "$catalog" --remote "$remote" --json >"$work/probe.json"
mapfile -t digests < <(jq -r '.pulled[]' "$work/probe.json")
bytes=$(du -sb "$work/probe/images" | cut -f1)
rm -rf "$work/probe"

kiln_times=()
skopeo_times=()
for i in $(seq "$runs"); do
  echo "B13: round $i of $runs" >&2
  rm -rf "$work/runner"
  start=$(now)
  "$kiln" pull "$image" --home "$work/runner" --catalog "$catalog" --remote "$remote" >/dev/null
  kiln_times+=("$(since "$start")")
  rm -rf "$work/skopeo"
  mkdir -p "$work/skopeo"
  start=$(now)
  for digest in "${digests[@]}"; do
    skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/kiln:kiln-blob-$digest" "dir:$work/skopeo/$digest"
  done
  skopeo_times+=("$(since "$start")")
done
rm -rf "$work/runner" "$work/skopeo"

# A fresh runner's job when nothing changed: the catalog answers, nothing is pulled.
uptodate_times=()
for _ in $(seq "$runs"); do
  rm -rf "$work/fresh"
  start=$(now)
  "$kiln" build examples/debian --only shop-web --home "$work/fresh" --catalog "$catalog" --remote "$remote" >"$work/out"
  uptodate_times+=("$(since "$start")")
  grep -q "^up to date: $image" "$work/out"
  [ -z "$(ls "$work/fresh/images")" ] || { echo "B13: the up-to-date job pulled something" >&2; exit 1; }
done

kiln_median=$(printf '%s\n' "${kiln_times[@]}" | median)
skopeo_median=$(printf '%s\n' "${skopeo_times[@]}" | median)
ratio=$(awk -v a="$kiln_median" -v b="$skopeo_median" 'BEGIN { printf "%.2f", a / b }')
uptodate_median=$(printf '%s\n' "${uptodate_times[@]}" | median)
stamp=$(date -u +%Y%m%d-%H%M%S)
{
  echo "# B13: pulling a chain from a registry (bench/remote.sh)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r)"
  echo "- registry: docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?') on 127.0.0.1, plain HTTP, no auth; skopeo $(skopeo --version | awk '{ print $3 }')"
  echo "- chain: the ${#digests[@]} blobs of $image's chain, down to the source disk ($(awk -v b="$bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }')), $runs rounds, kiln and skopeo alternating"
  echo
  echo "| case | min / median / max (s) | goal | result |"
  echo "|---|---|---|---|"
  echo "| kiln pull into an empty store (verified) | $(printf '%s\n' "${kiln_times[@]}" | stats " / ") | | |"
  echo "| skopeo copy of the same ${#digests[@]} blobs (dir:) | $(printf '%s\n' "${skopeo_times[@]}" | stats " / ") | | |"
  echo "| ratio kiln / skopeo (medians) | $ratio | ≤ 1.0 | $(awk -v r="$ratio" 'BEGIN { print (r <= 1.0 ? "met" : "missed") }') |"
  echo "| fresh runner's up-to-date job (kiln build --only shop-web, empty store) | $(printf '%s\n' "${uptodate_times[@]}" | stats " / ") | ≤ 3 s | $(awk -v r="$uptodate_median" 'BEGIN { print (r <= 3.0 ? "met" : "missed") }') |"
} | tee "bench/results/remote-$stamp.md" >bench/results/remote-latest.md
cat bench/results/remote-latest.md
