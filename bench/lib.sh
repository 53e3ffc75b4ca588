# Shell helpers every bench/ script sources (after `cd` to the repository).
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# min SEP median SEP max of the numbers on stdin (SEP: " | " unless given; the median of an
# even count is the upper middle).
stats() {
  sort -g | awk -v sep="${1:- | }" '{ v[NR] = $1 } END { printf "%.2f%s%.2f%s%.2f", v[1], sep, v[int(NR / 2) + 1], sep, v[NR] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR / 2) + 1] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# "met" when VALUE ≤ GOAL, else by how much it missed.
verdict() { awk -v v="$1" -v goal="$2" 'BEGIN { print (v <= goal ? "met" : sprintf("missed by %.0f%%", (v / goal - 1) * 100)) }'; }
