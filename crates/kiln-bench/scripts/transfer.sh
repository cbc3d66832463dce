#!/usr/bin/env bash
# Keras's transfer-learning example on MNIST: the `mnist` CNN trained on the digits 0-4; then,
# for each seed, its convolutions frozen and a new dense head trained on 5-9 with 50 labelled
# images per class (--init-from, --init-skip head, --freeze blocks), against the same CNN from
# scratch on the same 250 images. Fixed epochs (no early stopping: the 5,881 validation images
# would be labels the few-label runs do not have). Prints each run's test accuracy on the
# whole 5-9 test set and the medians.
#
#   crates/kiln-bench/scripts/transfer.sh KILN [SEEDS...]   (default seeds: 1 2 3)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,9p "$0" >&2; exit 2; }
kiln="$1"
shift
seeds="${*:-1 2 3}"
EPOCHS="${EPOCHS:-30}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

accuracy() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_accuracy"])' \
        "$1/metrics.json"
}

start=$(date +%s)
"$kiln" train --quiet --model cnn --dataset mnist --classes 0-4 --epochs 3 --out "$tmp/base" \
    > /dev/null
echo "{\"run\": \"base: digits 0-4, all labels, 3 epochs\", \"test_accuracy\": $(accuracy "$tmp/base"), \"seconds\": $(($(date +%s) - start))}"
few=(--model cnn --dataset mnist --classes 5-9 --train-per-class 50 --epochs "$EPOCHS" --patience 0)
for seed in $seeds; do
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --init-from "$tmp/base" --init-skip head \
        --freeze blocks --out "$tmp/tuned-$seed" > /dev/null
    "$kiln" train --quiet "${few[@]}" --seed "$seed" --out "$tmp/scratch-$seed" > /dev/null
    echo "{\"seed\": $seed, \"fine_tuned\": $(accuracy "$tmp/tuned-$seed"), \"from_scratch\": $(accuracy "$tmp/scratch-$seed")}"
done
python3 - "$tmp" $seeds <<'PY'
import json, statistics, sys
tmp, seeds = sys.argv[1], sys.argv[2:]
acc = lambda d: json.load(open(f"{tmp}/{d}/metrics.json"))["test_accuracy"]
print(json.dumps({
    "median_fine_tuned": statistics.median(acc(f"tuned-{s}") for s in seeds),
    "median_from_scratch": statistics.median(acc(f"scratch-{s}") for s in seeds),
}))
PY
