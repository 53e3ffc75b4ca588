#!/usr/bin/env bash
# B11: export of an image that carries 2 GiB of data: time and peak memory of each format, the
# OCI push to a local registry, and the same push again (nothing re-sent).
#
#   bench/export.sh            writes bench/results/export-latest.md (and a dated copy)
#
# BENCH_HOME (default /tmp/kiln-bench) is the store; the 2 GiB image (bench/templates/export) is
# built into it once, not timed. Peak memory is GNU time's maximum resident set of kiln and the
# children it waited for (qemu-img). The baseline beside the qcow2 export is the plain
# `qemu-img convert` a Packer build ends with.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
home=${BENCH_HOME:-/tmp/kiln-bench}
out=$(mktemp -d "$home/../kiln-export-bench.XXXXXX")
registry_pid=
cleanup() {
  [ -z "$registry_pid" ] || { kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; }
  rm -rf "$out"
}
trap cleanup EXIT
kiln=$repo/.build/release/kiln
# The Makefile's one release build.
make -s build-release >/dev/null
mkdir -p bench/results

echo "building bench/templates/export into $home once (not timed)" >&2
"$kiln" build bench/templates/export --home "$home" >&2
image=$("$kiln" resolve bench-big --home "$home")

# seconds and peak KiB of one command, as "S KIB"
measure() { /usr/bin/time -f "%e %M" -o "$out/time" "$@" >"$out/stdout" 2>"$out/stderr" || { cat "$out/stderr" >&2; exit 1; }; cat "$out/time"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
rows=()
for format in qcow2 raw tar.zst oci; do
  echo "B11: kiln export --format $format" >&2
  rm -rf "$out/artifact"
  read -r seconds kib < <(measure "$kiln" export "$image" --format "$format" --output "$out/artifact" --home "$home" --force)
  size=$(du -sb --apparent-size "$out/artifact" | cut -f1)
  alloc=$(du -sB1 "$out/artifact" | cut -f1)
  rows+=("| kiln export --format $format | $seconds | $((kib / 1024)) | $(mib "$size") ($(mib "$alloc") allocated) |")
  rm -rf "$out/artifact"* "$out/kiln-manifest.json"
done
disk=$("$kiln" inspect "$image" --json --home "$home" | jq -r .disk)
read -r seconds kib < <(measure qemu-img convert -O qcow2 "$disk" "$out/baseline.qcow2")
rows+=("| baseline: qemu-img convert -O qcow2 (Packer's last step) | $seconds | $((kib / 1024)) | $(mib "$(stat -c %s "$out/baseline.qcow2")") |")
rm -f "$out/baseline.qcow2"

# The push: a registry on loopback (Debian's docker-registry), pushed to twice.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$out/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $out/registry}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$out/registry.yml" >"$out/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done
push_rows=()
for run in first second; do
  echo "B11: kiln export --format oci --push ($run)" >&2
  read -r seconds kib < <(measure "$kiln" export "$image" --format oci --push "127.0.0.1:$port/bench/big:$run" --home "$home" --json)
  uploaded=$(jq '.push.uploaded | length' "$out/stdout")
  existing=$(jq '.push.existing | length' "$out/stdout")
  push_rows+=("| $run push | $seconds | $((kib / 1024)) | $uploaded | $existing |")
done

date=$(date -u +%Y%m%d-%H%M%S)
{
  echo "# B11: export of a 2 GiB image"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB RAM"
  echo "Image: $image (bench/templates/export: 2 GiB of incompressible files on the bench base)."
  echo
  echo "| what | seconds | peak RSS (MiB) | artifact |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "| OCI push to a loopback registry | seconds | peak RSS (MiB) | blobs uploaded | blobs already there |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${push_rows[@]}"
} | tee "bench/results/export-$date.md" >bench/results/export-latest.md
cat bench/results/export-latest.md
