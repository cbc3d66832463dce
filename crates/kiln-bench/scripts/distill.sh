#!/usr/bin/env bash
# Knowledge distillation on MNIST (Hinton et al., 2015): the `mnist` CNN (4 epochs, cosine)
# teaches three students, each against the same student trained on the labels alone, same
# seed, same flags: the README's MLP 784-128-64-10 (dropout 0.2, 10 epochs), a small MLP
# 784-32-10 (10 epochs), and the README's MLP from 1,800 labelled images (3% of the training
# set, as Hinton's speech experiment; 40 epochs, no early stopping). `kiln distill` with its
# defaults (temperature 3, alpha 0.1). Prints each run's test accuracy and the medians.
#
#   crates/kiln-bench/scripts/distill.sh KILN [SEEDS...]   (default seeds: 1 2 3)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,9p "$0" >&2; exit 2; }
kiln="$1"
shift
seeds="${*:-1 2 3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
"$kiln" train --quiet --model cnn --preset mnist --dataset mnist --epochs 4 --lr-schedule cosine \
    --out "$tmp/teacher" > /dev/null
echo "{\"run\": \"teacher: mnist CNN, 4 epochs\", \"seconds\": $(($(date +%s) - start))}"
declare -A students=(
    [mlp]="--hidden 128,64 --dropout 0.2 --epochs 10"
    [small]="--hidden 32 --dropout 0 --epochs 10"
    [few]="--hidden 128,64 --dropout 0.2 --epochs 40 --patience 0 --train-samples 1800"
)
for student in mlp small few; do
    for seed in $seeds; do
        flags=(--model mlp --dataset mnist --seed "$seed" ${students[$student]})
        for way in alone distilled; do
            start=$(date +%s%N)
            case $way in
                alone) "$kiln" train --quiet "${flags[@]}" --out "$tmp/$student-$way-$seed" ;;
                distilled) "$kiln" distill --quiet --teacher "$tmp/teacher" "${flags[@]}" \
                    --out "$tmp/$student-$way-$seed" ;;
            esac > /dev/null
            echo $(( ($(date +%s%N) - start) / 1000000 )) > "$tmp/$student-$way-$seed/ms"
        done
    done
done
python3 - "$tmp" $seeds <<'PY'
import json, statistics, sys
tmp, seeds = sys.argv[1], sys.argv[2:]
acc = lambda d: json.load(open(f"{tmp}/{d}/metrics.json"))["test_accuracy"]
secs = lambda d: int(open(f"{tmp}/{d}/ms").read()) / 1000
print(json.dumps({"teacher_test_accuracy": acc("teacher")}))
for student in ["mlp", "small", "few"]:
    for way in ["alone", "distilled"]:
        runs = [f"{student}-{way}-{s}" for s in seeds]
        print(json.dumps({"student": student, "way": way,
                          "test_accuracy": [round(acc(r), 4) for r in runs],
                          "median": round(statistics.median(acc(r) for r in runs), 4),
                          "seconds": [round(secs(r), 1) for r in runs]}))
PY
