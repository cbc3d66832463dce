#!/usr/bin/env bash
# One change's effect on kiln's training throughput, in one command: two kiln-bench binaries,
# built before and after the change, run alternately.
#
#   crates/kiln-bench/scripts/before-after.sh OLD_KILN_BENCH NEW_KILN_BENCH [mlp cnn lstm transformer]
#
# Per model, PAIRS (default 7) alternating runs of `kiln-bench MODEL --only kiln --runs 1` (one
# epoch after a warm-up on 8 batches, validation excluded), old first in odd pairs and new first
# in even ones; prints every pair, then one JSON line: both medians of samples/s and "new_vs_old",
# the median of the paired ratios new/old (above 1: the change made training faster).
#
# To build the old binary, check out the earlier commit in a worktree outside the repository,
# build it there, copy the binary out, then touch this checkout's sources (the two checkouts'
# crates share names, so cargo would otherwise reuse the other's artifacts in a shared target).
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,14p "$0" >&2; exit 2; }
old="$1" new="$2"
shift 2
PAIRS="${PAIRS:-7}"
rate() { "$1" "$2" --only kiln --runs 1 --backend flex | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["samples_per_sec"])'; }
for model in "${@:-mlp cnn}"; do
    for m in $model; do
        olds=() news=()
        for pair in $(seq 1 "$PAIRS"); do
            if [ $((pair % 2)) -eq 1 ]; then
                o=$(rate "$old" "$m"); n=$(rate "$new" "$m")
            else
                n=$(rate "$new" "$m"); o=$(rate "$old" "$m")
            fi
            olds+=("$o") news+=("$n")
            echo "$m pair $pair: old $o, new $n samples/s"
        done
        python3 - "$m" "${olds[*]}" "${news[*]}" <<'PY'
import json, statistics, sys
model, olds, news = sys.argv[1], list(map(float, sys.argv[2].split())), list(map(float, sys.argv[3].split()))
ratios = [n / o for o, n in zip(olds, news)]
print(json.dumps({"model": model, "old": statistics.median(olds), "new": statistics.median(news),
                  "new_vs_old": round(statistics.median(ratios), 3),
                  "ratios": [round(r, 3) for r in ratios]}))
PY
    done
done
