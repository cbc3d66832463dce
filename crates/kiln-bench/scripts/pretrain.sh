#!/usr/bin/env bash
# BERT's paradigm on SpamAssassin: a transformer encoder pre-trained as a masked-language model
# on the messages' texts, labels unused (`kiln pretrain`, 95% of the 6,046 messages; 5% held
# out to score the hidden-word predictions), then, for each seed, a spam filter trained from
# only 200 labelled messages two ways: fine-tuned from the pre-trained encoder (`--init-from`,
# which also gives it the pre-trained vocabulary) and the same model from scratch. Fixed epochs
# (no early stopping: the 967 validation messages would be labels the 200-label runs do not
# have). Prints each run's test accuracy on the seed's 1,209 test messages, and the medians.
#
#   crates/kiln-bench/scripts/pretrain.sh KILN [SEEDS...]   (default seeds: 1 2 3)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0" >&2; exit 2; }
kiln="$1"
shift
seeds="${*:-1 2 3}"
PRETRAIN_EPOCHS="${PRETRAIN_EPOCHS:-20}"
EPOCHS="${EPOCHS:-20}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
model=(--model transformer --d-model 64 --heads 4 --layers 2 --seq-len 128)

start=$(date +%s)
"$kiln" pretrain --quiet "${model[@]}" --dataset spam --vocab-size 8000 --batch-size 32 \
    --lr 0.003 --lr-schedule cosine \
    --epochs "$PRETRAIN_EPOCHS" --test-split 0.05 --validation-split 0.05 --seed 1 \
    --out "$tmp/pretrained" > /dev/null
echo "{\"run\": \"pre-training, $PRETRAIN_EPOCHS epochs\", \"seconds\": $(($(date +%s) - start))}"
few=("${model[@]}" --dataset spam --train-samples 200 --batch-size 16 --epochs "$EPOCHS" --patience 0)
for seed in $seeds; do
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/pretrained" \
        --out "$tmp/tuned-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --out "$tmp/scratch-$seed" > /dev/null
done
python3 - "$tmp" $seeds <<'PY'
import json, statistics, sys
tmp, seeds = sys.argv[1], sys.argv[2:]
m = json.load(open(f"{tmp}/pretrained/metrics.json"))
print(json.dumps({"pretrained_masked_token_accuracy": round(m["test_accuracy"], 4),
                  "pretrained_masked_token_loss": round(m["test_loss"], 4)}))
for way in ["tuned", "scratch"]:
    acc = [json.load(open(f"{tmp}/{way}-{s}/metrics.json"))["test_accuracy"] for s in seeds]
    print(json.dumps({"way": way, "test_accuracy": [round(a, 4) for a in acc],
                      "median": round(statistics.median(acc), 4)}))
PY
