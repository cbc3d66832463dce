#!/usr/bin/env bash
# Keras's transfer-learning example on MNIST: the `mnist` CNN trained on the digits 0-4; then,
# for each seed, five ways to learn 5-9 from 50 labelled images per class: its convolutions
# frozen under a new dense head (--init-from, --init-skip head, --freeze blocks); the same with
# the convolutions unfrozen at epoch 16 at a tenth of the rate (--unfreeze-at 16); LoRA adapters
# of rank 8 on its dense layers, everything else frozen (--lora 8); the whole network
# fine-tuned (--init-from alone); and the same CNN from scratch. Fixed epochs (no early
# stopping: the 5,881 validation images would be labels the few-label runs do not have).
# Prints each run's test accuracy on the whole 5-9 test set and trainable parameters, and the
# medians.
#
#   crates/kiln-bench/scripts/transfer.sh KILN [SEEDS...]   (default seeds: 1 2 3)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,12p "$0" >&2; exit 2; }
kiln="$1"
shift
seeds="${*:-1 2 3}"
EPOCHS="${EPOCHS:-30}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
"$kiln" train --quiet --model cnn --dataset mnist --classes 0-4 --epochs 3 --out "$tmp/base" \
    > /dev/null
echo "{\"run\": \"base: digits 0-4, all labels, 3 epochs\", \"seconds\": $(($(date +%s) - start))}"
few=(--model cnn --dataset mnist --classes 5-9 --train-per-class 50 --epochs "$EPOCHS" --patience 0)
for seed in $seeds; do
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/base" --init-skip head \
        --freeze blocks --out "$tmp/frozen-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/base" --init-skip head \
        --freeze blocks --unfreeze-at 16 --out "$tmp/thawed-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/base" --lora 8 \
        --out "$tmp/lora-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/base" \
        --out "$tmp/full-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --out "$tmp/scratch-$seed" > /dev/null
done
python3 - "$tmp" $seeds <<'PY'
import json, re, statistics, sys
tmp, seeds = sys.argv[1], sys.argv[2:]
def run(d):
    acc = json.load(open(f"{tmp}/{d}/metrics.json"))["test_accuracy"]
    text = open(f"{tmp}/{d}/summary.txt").read()
    trainable = int(re.search(r"Trainable params: ([\d,]+)", text).group(1).replace(",", ""))
    return acc, trainable
print(json.dumps({"base_test_accuracy_0_4": run("base")[0]}))
for way in ["frozen", "thawed", "lora", "full", "scratch"]:
    runs = [run(f"{way}-{s}") for s in seeds]
    print(json.dumps({"way": way, "test_accuracy": [round(a, 4) for a, _ in runs],
                      "median": round(statistics.median(a for a, _ in runs), 4),
                      "trainable_params": runs[0][1]}))
PY
