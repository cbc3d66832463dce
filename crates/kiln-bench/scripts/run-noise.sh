#!/usr/bin/env bash
# How much of a trial's value is the configuration and how much is the run: one configuration
# trained again with its learning rate nudged by 0.1% at a time (LR x (1 + 0.001 k), k = 0 ..
# N-1): the same configuration to any sampler, another trajectory to the training, 27 epochs on a
# cosine schedule as tune.sh's trials. Prints each run's best val_loss by epoch 9 (ASHA's last
# rung) and in all, then their spread and the rank correlation of the two: whether a run's luck
# shows by the last rung.
#
#   crates/kiln-bench/scripts/run-noise.sh KILN [N]   (default N: 12)
#
# The default is the births series' best trial of tune.sh's random search (seed 1: an LSTM of
# 64 units, one layer, batch 16, learning rate 0.0077), whose births come from
# `datasets/fetch.sh us-births`. DATA (the dataset flags), FLAGS (the configuration) and LR pick
# another task and configuration.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,14p "$0" >&2; exit 2; }
kiln="$(realpath "$1")"
runs="${2:-12}"
lr="${LR:-0.007706311194598055}"
births="${KILN_DATA:-$HOME/.cache/kiln}/us-births/births.csv"
if [ -z "${DATA:-}" ]; then
    [ -s "$births" ] || { echo "$births is missing: datasets/fetch.sh us-births" >&2; exit 1; }
fi
data="${DATA:---dataset series-csv:$births --column births}"
flags="${FLAGS:---model lstm --hidden 64 --layers 1 --batch-size 16}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for k in $(seq 0 $((runs - 1))); do
    nudged=$(python3 -c "print($lr * (1 + 0.001 * $k))")
    # shellcheck disable=SC2086
    "$kiln" train --quiet $data $flags --lr "$nudged" \
        --epochs 27 --patience 0 --lr-schedule cosine --out "$tmp/$k" > "$tmp/$k.log" 2>&1 \
        || { cat "$tmp/$k.log" >&2; exit 1; }
    python3 - "$tmp/$k/history.csv" "$k" "$nudged" <<'PY'
import csv, json, sys
with open(sys.argv[1]) as f:
    values = [float(r["val_loss"]) for r in csv.DictReader(f)]
print(json.dumps({"k": int(sys.argv[2]), "lr": float(sys.argv[3]),
                  "best_by_epoch_9": min(values[:9]), "best_val_loss": min(values)}))
PY
done | tee "$tmp/runs.jsonl"
python3 - "$tmp/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
values = [r["best_val_loss"] for r in runs]


def ranks(xs):
    order = sorted(range(len(xs)), key=xs.__getitem__)
    return [order.index(i) for i in range(len(xs))]


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


print(json.dumps({"runs": len(values), "min": min(values), "median": statistics.median(values),
                  "max": max(values), "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "rank_correlation_epoch_9_final": spearman([r["best_by_epoch_9"] for r in runs], values)}))
PY
