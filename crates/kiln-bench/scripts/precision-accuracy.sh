#!/usr/bin/env bash
# The README's MNIST MLP and CNN, sequential-MNIST LSTM and SpamAssassin transformer commands,
# each with --precision f32 and --precision bf16 (the same seed), one after the other; prints
# one line per run: the command's model, the precision, what computed the products, the test
# accuracy and the training seconds (from metrics.json).
#
#   crates/kiln-bench/scripts/precision-accuracy.sh KILN
#
# MODELS (default "mlp cnn lstm transformer") picks the commands ("gru" adds the LSTM's command
# with --model gru, whose products are Burn's, rounded to bf16 by kiln_common::autocast); SEEDS
# (default 42, kiln's default seed) runs each pair once per seed.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,11p "$0" >&2; exit 2; }
kiln="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
commands=(
    "mlp|--dataset mnist --hidden 128,64 --dropout 0.2 --epochs 10"
    "cnn|--model cnn --preset mnist --dataset mnist --epochs 12 --lr-schedule cosine --monitor val_accuracy"
    "lstm|--model lstm --dataset sequential-mnist --hidden 128 --epochs 10"
    "gru|--model gru --dataset sequential-mnist --hidden 128 --epochs 10"
    "transformer|--model transformer --dataset spam --d-model 64 --heads 4 --layers 2 --seq-len 256 --pooling cls --dropout 0.3 --batch-size 16 --validation-split 0.1 --epochs 8 --patience 2"
)
models=" ${MODELS:-mlp cnn lstm transformer} "
for entry in "${commands[@]}"; do
    name="${entry%%|*}"
    [[ "$models" == *" $name "* ]] || continue
    read -r -a flags <<< "${entry#*|}"
    for seed in ${SEEDS:-42}; do
        for precision in f32 bf16; do
            out="$tmp/$name-$seed-$precision"
            "$kiln" train --quiet "${flags[@]}" --seed "$seed" --precision "$precision" \
                --out "$out" > /dev/null
            python3 - "$out/metrics.json" "$name" "$seed" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(json.dumps({"model": sys.argv[2], "seed": int(sys.argv[3]), "precision": m["precision"],
                  "unit": m["precision_unit"], "test_accuracy": round(m["test_accuracy"], 4),
                  "train_seconds": round(m["train_seconds"], 1)}))
PY
        done
    done
done
