#!/usr/bin/env bash
# kiln beside Packer, on the same work, in one run on one machine (issue 11).
#
#   bench/run.sh [--runs N]     all of B1-B10, B12 and the boot levers (~30 min under TCG);
#                               writes bench/results/latest.md and a dated copy
#   bench/run.sh --quick        B4, B8, B9 and B10 only, no VM booted once the graph is built
#                               (what CI runs); writes bench/results/quick.md (not kept in git)
#   bench/run.sh --warm         B1 (cold), B1-warm and B5 beside Packer's B1, and the warm
#                               snapshot's save time (~10 min); writes bench/results/warm-latest.md
#
# BENCH_HOME (default /tmp/kiln-bench) is kiln's store for the run; its Debian source disk is
# made once and then shared by every case, Packer's included. BENCH_GRAPH (default
# bench/templates/graph) is the graph --quick rebuilds; CI points it at examples/debian in the
# store its VM tests already filled.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
warm_only=0
runs=3
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --warm) warm_only=1 ;;
    --runs) runs=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

home=${BENCH_HOME:-/tmp/kiln-bench}
graph=${BENCH_GRAPH:-bench/templates/graph}
work=$(mktemp -d /tmp/kiln-bench-work.XXXXXX)
trap 'rm -rf "$work"' EXIT
: >"$work/failures"
kiln=$repo/.build/release/kiln
bench=$repo/.build/release/kiln-bench
# The Makefile's one release build (kiln and kiln-bench among its products).
make -s build-release >/dev/null
mkdir -p bench/results

source bench/lib.sh
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
allocated() { du -B1 -c "$@" | tail -1 | cut -f1; }

rows=()
row() { rows+=("$*"); }

machine="$(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, $(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)"

# --- B4: the graph rebuilt with no change ------------------------------------------------
b4() {
  if "$kiln" plan "$graph" --home "$home" --json | jq -e 'any(.[]; .action == "build")' >/dev/null; then
    echo "building $graph once into $home (not timed)" >&2
    "$kiln" build "$graph" --home "$home" >/dev/null 2>&1
  fi
  b4_times=()
  local vms=0
  for _ in $(seq 5); do
    local start; start=$(now)
    "$kiln" build "$graph" --home "$home" >"$work/out" 2>"$work/err"
    b4_times+=("$(since "$start")")
    vms=$((vms + $(grep -c "booting VM" "$work/err" || true)))
  done
  b4_median=$(printf '%s\n' "${b4_times[@]}" | median)
  b4_vms=$vms
}

# --- B8: validate + plan of 1,000 generated templates, 5 levels deep ---------------------
b8() {
  "$bench" generate "$work/b8" 1000 >/dev/null
  local validate=() plan=() both=()
  for _ in $(seq 5); do
    local start; start=$(now)
    "$kiln" validate "$work/b8" >/dev/null
    local v; v=$(since "$start")
    start=$(now)
    "$kiln" plan "$work/b8" --home "$work/b8-home" >/dev/null
    local p; p=$(since "$start")
    validate+=("$v"); plan+=("$p"); both+=("$(awk -v a="$v" -v b="$p" 'BEGIN { print a + b }')")
  done
  b8_validate=$(printf '%s\n' "${validate[@]}" | stats)
  b8_plan=$(printf '%s\n' "${plan[@]}" | stats)
  b8_both=$(printf '%s\n' "${both[@]}" | stats)
  b8_median=$(printf '%s\n' "${both[@]}" | median)
}

# --- B10: kiln refresh --check, 50 images against real-size indexes ------------------------
b10() {
  "$bench" refresh "$work/b10"
  python3 -c '
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2], "w").write(str(server.server_address[1]))
server.serve_forever()' "$work/b10/www" "$work/b10/port" 2>/dev/null &
  local server=$!
  for _ in $(seq 100); do [ -s "$work/b10/port" ] && break; sleep 0.05; done
  local url="http://127.0.0.1:$(cat "$work/b10/port")/" cold=() warm=()
  for _ in $(seq 5); do
    rm -rf "$work/b10/home/cache/apt-indexes"
    for kind in cold warm; do
      local start; start=$(now)
      "$kiln" refresh "$work/b10/images" --check --var "repo=$url" --home "$work/b10/home" >"$work/out" 2>&1 || true
      local t; t=$(since "$start")
      grep -q "would rebuild" "$work/out" || { cat "$work/out" >&2; kill "$server"; return 1; }
      if [ "$kind" = cold ]; then cold+=("$t"); else warm+=("$t"); fi
    done
  done
  kill "$server"
  b10_packages=$(sed -n 's/^  bookworm (\([0-9]*\) packages.*/\1/p' "$work/out")
  b10_cold=$(printf '%s\n' "${cold[@]}" | stats)
  b10_warm=$(printf '%s\n' "${warm[@]}" | stats)
  b10_median=$(printf '%s\n' "${cold[@]}" | median)
}

quick_report() {
  echo "| B4 | $graph rebuilt, no change (5 runs; VMs booted: $b4_vms) | $(printf '%s\n' "${b4_times[@]}" | stats) s | | < 2 s: $(verdict "$b4_median" 2) |"
  echo "| B8 | validate 1,000 templates, 5 levels (5 runs) | $b8_validate s | | |"
  echo "| B8 | plan 1,000 templates, 5 levels (5 runs) | $b8_plan s | | |"
  echo "| B8 | validate + plan | $b8_both s | | < 1 s: $(verdict "$b8_median" 1) |"
  "$bench" catalog | sed 's/^| /| B9 | /; s/ | \([^|]*\) |$/ | | \1 |/'
  b10_rows
}

b10_rows() {
  echo "| B10 | refresh --check, 50 images, indexes of $b10_packages + 3,000 packages over loopback HTTP, nothing cached (5 runs) | $b10_cold s | | < 5 s: $(verdict "$b10_median" 5) |"
  echo "| B10 | the same with the parsed indexes cached (only the Release files read) | $b10_warm s | | |"
}

header() {
  echo "# $1"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $machine"
  echo "- kiln: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)'), release build; store: $home"
}

if [ "$quick" = 1 ]; then
  start=$(now)
  b4
  b8
  b10
  {
    header "kiln benchmarks, quick mode (B4, B8, B9, B10)"
    echo "- runs: as listed; no Packer in quick mode (bench/run.sh without --quick runs it)"
    echo
    echo "| id | case | min | median | max | notes | goal |"
    echo "|---|---|---|---|---|---|---|"
    quick_report
    echo
    echo "Measured in $(since "$start") s."
  } | tee bench/results/quick.md
  exit 0
fi

command -v packer >/dev/null || { echo "bench/run.sh: Packer is not installed (make bench installs it)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench/run.sh: jq is not installed (make bench installs it)" >&2; exit 1; }
packer_version=$(packer version | head -1)
# Packer keeps a cache (port locks, downloads) in the current directory unless told otherwise.
export PACKER_CACHE_DIR="$work/packer_cache"
graph=bench/templates/graph

# --- Setup: kiln's source disk, the disk both tools start from ---------------------------
echo "setup: kiln's Debian 12 source disk and a first build (not timed)" >&2
"$kiln" build bench/templates/one --home "$home" >/dev/null 2>"$work/setup.err" || { cat "$work/setup.err" >&2; exit 1; }
one_disk=$("$kiln" inspect bench-one --home "$home" --json | jq -r .disk)
source_dir=$(cd "$(dirname "$one_disk")" && cd "$(dirname "$(qemu-img info --output=json "$one_disk" | jq -r '."backing-filename"')")" && pwd)
source_disk=$source_dir/disk.qcow2
kernel=$source_dir/vmlinuz
initrd=$source_dir/initrd.img
# The accelerator kiln chose; Packer gets the same.
if grep -q "booting VM (KVM" "$work/setup.err"; then accel=kvm; else accel=tcg; fi
disk_size="$(($(qemu-img info --output=json "$source_disk" | jq '."virtual-size"') / 1048576))M"
ssh-keygen -q -t ed25519 -N "" -C kiln-bench -f "$work/packer_key"
credential="type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=$(base64 -w0 "$work/packer_key.pub")"

# timed TOOL LOG COMMAND...: runs COMMAND with its output in LOG and prints its wall seconds.
# A failed run is run once more and counted in the report (a guest that never answered SSH has
# been seen under TCG, for both tools' VMs); its time is not a build's time.
timed() {
  local tool=$1 log=$2
  shift 2
  for attempt in 1 2; do
    local start; start=$(now)
    if "$@" >"$log" 2>&1; then
      since "$start"
      return 0
    fi
    echo "$tool build failed (attempt $attempt):" >&2
    grep -a "errored\|Error\|error\|failed at" "$log" | tail -3 >&2
    echo "$tool" >>"$work/failures"
  done
  exit 1
}

# packer_build OUT BASE_DISK SCRIPT [RELEASE]: one Packer build; prints its wall seconds.
packer_build() {
  local out=$1 base=$2 script=$3 release=${4:-1}
  rm -rf "$out"
  timed packer "$out.log" packer build -var base_disk="$base" -var kernel="$kernel" -var initrd="$initrd" \
    -var ssh_key="$work/packer_key" -var ssh_credential="$credential" -var disk_size="$disk_size" \
    -var accelerator="$accel" -var script="$script" -var release="$release" -var out="$out" bench/packer/layer.json
}

# kiln_build ARGS...: one kiln build; prints its wall seconds, keeps its output in $work/kiln.log.
kiln_build() { timed kiln "$work/kiln.log" "$kiln" build "$@" --home "$home"; }

# The guest's own time in a kiln build, from its log: boot to SSH, the steps, the power-off.
# (Each value is the number after its phrase: "SSH is up after 17.1 s (sshd answered after ...)".)
guest_time() {
  "$kiln" logs "$1" --home "$home" | awk '
    function after(p) { match($0, p " [0-9.]+"); return substr($0, RSTART + length(p) + 1, RLENGTH - length(p) - 1) }
    /\[kiln\] SSH is up after / { t += after("SSH is up after") }
    /\[kiln\] step done in / { t += after("step done in") }
    /\[kiln\] VM stopped after / { t += after("VM stopped after") }
    END { printf "%.2f", t }'
}
log_value() {
  "$kiln" logs "$1" --home "$home" | awk -v pat="$2" '
    match($0, pat " [0-9.]+") { v = substr($0, RSTART + length(pat) + 1, RLENGTH - length(pat) - 1) } END { print v }'
}

# --- B1 and B2: one image, one step ------------------------------------------------------
# B1 is the cheapest case and its ratio the most exposed to noise: two runs more.
b1_runs=$((runs + 2))
echo "B1/B2: one image, one shell step, $b1_runs runs each, interleaved" >&2
b1_kiln=(); b1_packer=(); b2=(); b2_boot=(); b2_banner=(); b2_stop=()
for i in $(seq "$b1_runs"); do
  # Cold: every VM booted (B1-warm below resumes one).
  t=$(kiln_build bench/templates/one --force --no-warm)
  b1_kiln+=("$t")
  name=$(awk '/^built / { print $2 }' "$work/kiln.log")
  g=$(guest_time "$name")
  b2+=("$(awk -v a="$t" -v b="$g" 'BEGIN { printf "%.2f", a - b }')")
  b2_boot+=("$(log_value "$name" "SSH is up after")")
  b2_banner+=("$(log_value "$name" "sshd answered after")")
  b2_stop+=("$(log_value "$name" "VM stopped after")")
  b1_packer+=("$(packer_build "$work/p-one" "$source_disk" bench/templates/one/one.sh)")
  echo "  run $i: kiln ${b1_kiln[-1]} s (overhead ${b2[-1]} s), packer ${b1_packer[-1]} s" >&2
done
b1_ratio=$(ratio "$(printf '%s\n' "${b1_kiln[@]}" | median)" "$(printf '%s\n' "${b1_packer[@]}" | median)")
b2_median=$(printf '%s\n' "${b2[@]}" | median)

# --- B1-warm: the same image again, its VM resumed from the source disk's warm snapshot ----
# The setup build saved it (docs/building.md#warm-snapshots); each run says whether it resumed.
echo "B1-warm: $b1_runs runs" >&2
b1w=(); b1w_resumed=0; b1w_boot=()
for i in $(seq "$b1_runs"); do
  b1w+=("$(kiln_build bench/templates/one --force)")
  if grep -q "resumed from the warm snapshot" "$work/kiln.log"; then b1w_resumed=$((b1w_resumed + 1)); fi
  name=$(awk '/^built / { print $2 }' "$work/kiln.log")
  b1w_boot+=("$(log_value "$name" "SSH is up after")")
  echo "  run $i: kiln ${b1w[-1]} s (resumed to SSH in ${b1w_boot[-1]} s)" >&2
done
b1w_median=$(printf '%s\n' "${b1w[@]}" | median)
b1w_ratio=$(ratio "$b1w_median" "$(printf '%s\n' "${b1_packer[@]}" | median)")
# Saves: the setup build's (the source disk's snapshot) and, below, each B3 run's.
saves=($(grep -o "warm snapshot saved in [0-9.]* s" "$work/setup.err" | awk '{ print $5 }' || true))

# B5 after a product-only change: the product's VM resumed from the app's snapshot.
b5_runs() {
  b5=(); b5_vms=(); b5_resumed=()
  for i in $(seq "$runs"); do
    b5+=("$(kiln_build "$graph" --var release="bench-$(date +%s)-$i")")
    b5_vms+=("$(grep -c "booting VM" "$work/kiln.log" || true)")
    b5_resumed+=("$(grep -c "resumed from the warm snapshot" "$work/kiln.log" || true)")
    echo "  run $i: kiln ${b5[-1]} s (VMs booted ${b5_vms[-1]}, resumed ${b5_resumed[-1]})" >&2
  done
  b5_median=$(printf '%s\n' "${b5[@]}" | median)
}
warm_rows() {
  local packer_b1; packer_b1=$(printf '%s\n' "${b1_packer[@]}" | median)
  echo "| B1-warm | B1 again, its VM resumed from the source disk's warm snapshot (resumed: $b1w_resumed of $b1_runs) | $(printf '%s\n' "${b1w[@]}" | stats) s | $packer_b1 s (B1) | $b1w_ratio; resumed to SSH in $(printf '%s\n' "${b1w_boot[@]}" | median) s (median) | ≤ 5 s: $(verdict "$b1w_median" 5); ≤ 0.25 × Packer: $(verdict "$b1w_ratio" 0.25) |"
  echo "| B5-warm | after a product-only change, the product's VM resumed from the app's snapshot (VMs booted per run: $(list "${b5_vms[@]}"); resumed: $(list "${b5_resumed[@]}")) | $(printf '%s\n' "${b5[@]}" | stats) s | $packer_b1 s (B1) | $(ratio "$b5_median" "$packer_b1") | ≤ 5 s: $(verdict "$b5_median" 5) |"
  echo "| save | a warm snapshot's save (pause, state to a file, overlay copy, hashes), each save of the run: $(list "${saves[@]}") s | $(printf '%s\n' "${saves[@]}" | stats) s | | | ≤ 2 s: $(verdict "$(printf '%s\n' "${saves[@]}" | sort -g | tail -1)" 2) |"
}
list() { printf '%s\n' "$@" | paste -sd' ' | sed 's/ /, /g'; }

if [ "$warm_only" = 1 ]; then
  echo "the graph, once (B5's starting point, saving the snapshots; not timed)" >&2
  kiln_build "$graph" --force >/dev/null
  saves+=($(grep -o "warm snapshot saved in [0-9.]* s" "$work/kiln.log" | awk '{ print $5 }' || true))
  echo "B5-warm: $runs runs" >&2
  b5_runs
  {
    header "kiln warm snapshots beside Packer (bench/run.sh --warm)"
    echo "- peer: $packer_version, QEMU builder, the same source disk, kernel, initrd, 2 CPUs, 1024 MiB, accelerator: $accel"
    echo "- runs: B1 and B1-warm $b1_runs each (B1 interleaved with Packer), B5 $runs; min | median | max; ratios are of medians"
    echo
    echo "| id | case | kiln min | median | max | Packer median | ratio or value | goal |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| B1 | one image, one shell step, cold (--no-warm) | $(printf '%s\n' "${b1_kiln[@]}" | stats) s | $(printf '%s\n' "${b1_packer[@]}" | median) s | $b1_ratio | ≤ 0.6: $(verdict "$b1_ratio" 0.6) |"
    warm_rows
    echo
    echo "Every run: B1 kiln $(list "${b1_kiln[@]}") s, Packer $(list "${b1_packer[@]}") s; B1-warm $(list "${b1w[@]}") s; B5-warm $(list "${b5[@]}") s."
  } >"$work/warm.md"
  cp "$work/warm.md" "bench/results/warm-$(date -u +%Y%m%d-%H%M%S).md"
  cp "$work/warm.md" bench/results/warm-latest.md
  cat bench/results/warm-latest.md
  exit 0
fi

# --- B3: the three-layer graph, first build ----------------------------------------------
echo "B3: base -> app -> product, $runs runs each, interleaved" >&2
b3_kiln=(); b3_packer=(); p_base=(); p_app=(); p_product=()
for i in $(seq "$runs"); do
  b3_kiln+=("$(kiln_build "$graph" --force)")
  saves+=($(grep -o "warm snapshot saved in [0-9.]* s" "$work/kiln.log" | awk '{ print $5 }' || true))
  a=$(packer_build "$work/p-base" "$source_disk" "$graph/base.sh")
  b=$(packer_build "$work/p-app" "$work/p-base/image.qcow2" "$graph/app.sh")
  c=$(packer_build "$work/p-product" "$work/p-app/image.qcow2" "$graph/product.sh")
  p_base+=("$a"); p_app+=("$b"); p_product+=("$c")
  b3_packer+=("$(awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "%.2f", a + b + c }')")
  echo "  run $i: kiln ${b3_kiln[-1]} s, packer ${b3_packer[-1]} s ($a + $b + $c)" >&2
done
packer_chain=$(printf '%s\n' "${b3_packer[@]}" | median)
b3_ratio=$(ratio "$(printf '%s\n' "${b3_kiln[@]}" | median)" "$packer_chain")

# --- B6: disk bytes of the three images (the last B3 run of each tool) -------------------
kiln_disks=()
for family in bench-base bench-app bench-product; do kiln_disks+=("$("$kiln" inspect "$family" --home "$home" --json | jq -r .disk)"); done
kiln_bytes=$(allocated "${kiln_disks[@]}")
kiln_bytes_with_source=$(allocated "${kiln_disks[@]}" "$source_disk")
packer_bytes=$(allocated "$work/p-base/image.qcow2" "$work/p-app/image.qcow2" "$work/p-product/image.qcow2")
b6_ratio=$(ratio "$kiln_bytes_with_source" "$packer_bytes")

# --- B4 and B5: rebuilt with no change, then after a product-only change -----------------
echo "B4: no change; B5: product-only change" >&2
b4
b4_ratio=$(ratio "$b4_median" "$packer_chain")
b5_runs
b5_ratio=$(ratio "$b5_median" "$packer_chain")
b5_vs_one=$(ratio "$b5_median" "$(printf '%s\n' "${b1_kiln[@]}" | median)")

# --- B12: the product's test phase ---------------------------------------------------------
# kiln test on the product B5 left: tests_started to tests_passed in its --json events (the
# lines of the log that are JSON; kiln's own messages go to standard error, into the same log)
# test boot through firmware and GRUB, then the steps); goal: at most one VM cycle, B1 + 2 s.
echo "B12: the product's tests, $runs runs" >&2
b12=(); b12_boot=()
seconds_of() { jq -rR 'fromjson? | select(.event == "'"$1"'") | .time | capture("T(?<h>[0-9]+):(?<m>[0-9]+):(?<s>[0-9.]+)Z") | (.h | tonumber) * 3600 + (.m | tonumber) * 60 + (.s | tonumber)' "$2" | tail -1; }
for i in $(seq "$runs"); do
  timed kiln "$work/kiln-test.json" "$kiln" test bench-product bench/templates/tests --home "$home" --json >/dev/null
  b12+=("$(awk -v a="$(seconds_of tests_started "$work/kiln-test.json")" -v b="$(seconds_of tests_passed "$work/kiln-test.json")" 'BEGIN { printf "%.2f", b - a }')")
  b12_boot+=("$(jq -rR 'fromjson? | select(.event == "step_finished" and .step == "test boot") | .seconds' "$work/kiln-test.json" | awk '{ printf "%.2f", $1 }')")
  echo "  run $i: ${b12[-1]} s (test boot to SSH ${b12_boot[-1]} s)" >&2
done
b12_median=$(printf '%s\n' "${b12[@]}" | median)
b12_goal=$(awk -v b="$(printf '%s\n' "${b1_kiln[@]}" | median)" 'BEGIN { printf "%.2f", b + 2 }')

# --- B7: snapshot time against the parent's size -----------------------------------------
echo "B7: snapshot of a 10 MiB change on 2 and 8 GiB parents" >&2
b7_rows=$("$bench" snapshot "$work")

# --- B8 and B9 ---------------------------------------------------------------------------
echo "B8, B9" >&2
b8
b9_rows=$("$bench" catalog)
echo "B10" >&2
b10

# --- The boot levers ----------------------------------------------------------------------
echo "levers: what each boot-time choice is worth" >&2
lever_rows=$(bench/levers.sh "$source_disk" "$kernel" "$initrd" "$accel" "$runs")

{
  header "kiln beside Packer"
  echo "- peer: $packer_version, QEMU builder, the same source disk ($(mib "$(allocated "$source_disk")"), $disk_size), kernel, initrd,"
  echo "  2 CPUs, 1024 MiB, accelerator: $accel (kiln's probe; Packer is given the same), same provisioning scripts"
  echo "- runs per VM case: $runs (B1: $b1_runs), kiln and Packer interleaved; min | median | max; ratios are of medians"
  echo "- builds that failed and were run again (not timed): Packer $(grep -cx packer "$work/failures" || true), kiln $(grep -cx kiln "$work/failures" || true)"
  echo
  echo "| id | case | kiln min | median | max | Packer median | ratio or value | goal |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| B1 | one image, one shell step, cold (--no-warm) | $(printf '%s\n' "${b1_kiln[@]}" | stats) s | $(printf '%s\n' "${b1_packer[@]}" | median) s | $b1_ratio | ≤ 0.6: $(verdict "$b1_ratio" 0.6) |"
  echo "| B2 | kiln's overhead in B1: wall − (boot to SSH + steps + power-off) | $(printf '%s\n' "${b2[@]}" | stats) s | | boot to SSH $(printf '%s\n' "${b2_boot[@]}" | median) s (sshd's banner $(printf '%s\n' "${b2_banner[@]}" | median) s), power-off $(printf '%s\n' "${b2_stop[@]}" | median) s (medians) | ≤ 3 s: $(verdict "$b2_median" 3) |"
  echo "| B3 | base → app → product, first build (Packer: three chained builds) | $(printf '%s\n' "${b3_kiln[@]}" | stats) s | $packer_chain s | $b3_ratio | ≤ 0.6: $(verdict "$b3_ratio" 0.6) |"
  echo "| B4 | the graph rebuilt, no change (5 runs; VMs booted: $b4_vms) | $(printf '%s\n' "${b4_times[@]}" | stats) s | $packer_chain s (rebuilds all: B3) | $b4_ratio | < 2 s: $(verdict "$b4_median" 2) |"
  warm_rows
  echo "| B5 | after a product-only change (VMs booted per run: $(list "${b5_vms[@]}")) | $(printf '%s\n' "${b5[@]}" | stats) s | $packer_chain s (full chain: B3) | $b5_ratio; kiln B5 / kiln B1: $b5_vs_one | ≈ one VM cycle |"
  echo "| B6 | disk bytes of the three images (kiln: three overlays, $(mib "$kiln_bytes"); the median column adds the source disk they stand on) | | $(mib "$kiln_bytes_with_source") | | $(mib "$packer_bytes") (three full disks) | $b6_ratio | ≤ 0.4: $(verdict "$b6_ratio" 0.4) |"
  echo "| B12 | the product's test phase: a test boot of the sealed image (SeaBIOS, its GRUB, its first boot) and 3 test steps | $(printf '%s\n' "${b12[@]}" | stats) s | | test boot to SSH $(printf '%s\n' "${b12_boot[@]}" | median) s (median) | ≤ B1 + 2 s ($b12_goal s): $(verdict "$b12_median" "$b12_goal") |"
  echo "| B8 | validate + plan, 1,000 templates, 5 levels (5 runs; min / median / max of validate: $(echo "$b8_validate" | sed 's/ | / \/ /g') s, of plan: $(echo "$b8_plan" | sed 's/ | / \/ /g') s) | $b8_both s | | | < 1 s: $(verdict "$b8_median" 1) |"
  echo
  echo "Packer's three chained builds, medians: base $(printf '%s\n' "${p_base[@]}" | median) s, app $(printf '%s\n' "${p_app[@]}" | median) s, product $(printf '%s\n' "${p_product[@]}" | median) s."
  echo "Packer min | median | max: B1 $(printf '%s\n' "${b1_packer[@]}" | stats) s; B3 $(printf '%s\n' "${b3_packer[@]}" | stats) s."
  echo "Every run: B1 kiln $(list "${b1_kiln[@]}") s, Packer $(list "${b1_packer[@]}") s; B3 kiln $(list "${b3_kiln[@]}") s, Packer $(list "${b3_packer[@]}") s."
  echo
  echo "## B7: snapshot time against the parent's size"
  echo
  echo "kiln's snapshot (Store.seal: hash, fsync and move the child's overlay) beside a full copy of the same child"
  echo "(\`qemu-img convert\`, what Packer does after every build). Goal: independent of the parent's size."
  echo
  echo "| parent | kiln min | median | max | full copy min | median | max |"
  echo "|---|---|---|---|---|---|---|"
  echo "$b7_rows"
  echo
  echo "## B10: kiln refresh --check at scale"
  echo
  echo "| id | case | min | median | max | | goal |"
  echo "|---|---|---|---|---|---|---|"
  b10_rows
  echo
  echo "## B9: the catalog at scale (SQLite)"
  echo
  echo "| operation | min | median | max | goal |"
  echo "|---|---|---|---|---|"
  echo "$b9_rows"
  echo
  echo "## Boot levers"
  echo
  echo "Each lever measured on its own, QEMU started by hand on the same source disk (bench/levers.sh); seconds from"
  echo "QEMU's start to the guest's SSH banner (boot), or per command."
  echo
  echo "| lever | min | median | max |"
  echo "|---|---|---|---|"
  echo "$lever_rows"
} >"$work/report.md"
dated=bench/results/bench-$(date -u +%Y%m%d-%H%M%S).md
cp "$work/report.md" "$dated"
cp "$work/report.md" bench/results/latest.md
cat bench/results/latest.md
