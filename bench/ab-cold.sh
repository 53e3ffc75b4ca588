#!/usr/bin/env bash
# Cold B1 of two kilns on one machine, interleaved: is the current release build's cold boot
# as fast as an older kiln's? (issue 28: a cold B1 must not pay for warm snapshots. With
# --no-warm a build VM has no vmgenid device and no QMP socket, as before them; it keeps two
# more masked timers and the seal's wait for the end of the read-only remount.)
#
#   bench/ab-cold.sh OLD_KILN [--runs N]
#
# OLD_KILN is a release kiln built from another commit, e.g. the one before warm snapshots:
#   git worktree add --detach /tmp/kiln-old d457541 && make -C /tmp/kiln-old build-release
#   (the same build as the current one's); OLD_KILN=/tmp/kiln-old/.build/release/kiln
# Both build bench/templates/one with --force in BENCH_HOME (default /tmp/kiln-bench; its
# source disk is made once, not timed); the current kiln with --no-warm, the old one as it is
# (it has no warm snapshots). Each run builds once with each, which goes first alternating.
# OLD_COMMIT, if set, is written into the report beside OLD_KILN's path.
# Writes bench/results/ab-cold-latest.md and a dated copy.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
old=$1
shift
runs=7
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift ;;
    *) echo "bench/ab-cold.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$old" ] || { echo "bench/ab-cold.sh: $old is not an executable kiln" >&2; exit 2; }
home=${BENCH_HOME:-/tmp/kiln-bench}
new=$PWD/.build/release/kiln
make -s build-release >/dev/null
source bench/lib.sh
work=$(mktemp -d /tmp/kiln-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT

# build KILN ARGS...: one build of B1; prints its wall seconds (a failed build fails the run:
# a cold boot that fails is not a time).
build() {
  local kiln=$1 start
  shift
  start=$(now)
  "$kiln" build bench/templates/one --force --home "$home" "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
  since "$start"
}
echo "setup: the source disk (not timed)" >&2
"$new" build bench/templates/one --home "$home" --no-warm >/dev/null 2>&1
old_times=(); new_times=()
# Pairs in ABBA order (old first, then new first, ...): a host whose speed drifts steadily
# through the run favours neither kiln.
for i in $(seq "$runs"); do
  if [ $((i % 2)) = 1 ]; then
    old_times+=("$(build "$old")")
    new_times+=("$(build "$new" --no-warm)")
  else
    new_times+=("$(build "$new" --no-warm)")
    old_times+=("$(build "$old")")
  fi
  echo "  run $i: old ${old_times[-1]} s, new ${new_times[-1]} s" >&2
done
old_median=$(printf '%s\n' "${old_times[@]}" | median)
new_median=$(printf '%s\n' "${new_times[@]}" | median)
{
  echo "# Cold B1, two kilns interleaved (bench/ab-cold.sh)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)"
  echo "- old: $old${OLD_COMMIT:+ (commit $OLD_COMMIT)}"
  echo "- new: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)'), --no-warm"
  echo "- runs: $runs each, in pairs whose order alternates (old-new, new-old, ...); min | median | max"
  echo
  echo "| kiln | min | median | max |"
  echo "|---|---|---|---|"
  echo "| old | $(printf '%s\n' "${old_times[@]}" | stats) s |"
  echo "| new | $(printf '%s\n' "${new_times[@]}" | stats) s |"
  echo
  echo "new / old (medians): $(ratio "$new_median" "$old_median"); the median of the pairs' differences (new - old): $(for i in "${!old_times[@]}"; do awk -v a="${new_times[$i]}" -v b="${old_times[$i]}" 'BEGIN { printf "%.2f\n", a - b }'; done | median) s."
  echo "Every run: old $(printf '%s, ' "${old_times[@]}" | sed 's/, $//') s; new $(printf '%s, ' "${new_times[@]}" | sed 's/, $//') s."
} >"$work/ab.md"
cp "$work/ab.md" "bench/results/ab-cold-$(date -u +%Y%m%d-%H%M%S).md"
cp "$work/ab.md" bench/results/ab-cold-latest.md
cat bench/results/ab-cold-latest.md
