#!/usr/bin/env bash
# Random search, TPE and TPE + ASHA on each task with the same budget of epochs, for each study
# seed: the digits (MLP, classification), the daily US births (MLP, regression: the births of a
# day from its date), the same births as a series (LSTM, sequence: the next day's births from
# the last 12) and sequential MNIST (LSTM, sequence: a digit from its 28 rows, trained on 3,000
# images), each minimising val_loss over four hyperparameters, every trial at most 27 epochs on
# a cosine schedule (no early stopping). Then, from each study's reports in the order they came
# (study.db: a promoted trial's later epochs count when they ran), the best val_loss reached
# against the epochs spent: the best of each study, and the epochs TPE + ASHA took to reach
# random search's best. Prints one JSON line per study and per task.
#
#   crates/kiln-bench/scripts/tune.sh KILN [SEEDS...]   (default seeds: 1 2 3)
#
# The births come from `datasets/fetch.sh us-births`, MNIST from `datasets/fetch.sh mnist`.
# EPOCH_BUDGET (default 810: 30 trials of 27 epochs) sets each study's budget; MIN_EPOCHS
# (default 1) ASHA's first rung (rungs at 1, 3, 9); TASKS (default "digits us-births
# sequential-mnist"; also us-births-series, house-prices, airline) the tasks; EXTRA more flags
# for every trial; KEEP=DIR keeps the studies there.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,18p "$0" >&2; exit 2; }
kiln="$(realpath "$1")"
shift
seeds="${*:-1 2 3}"
budget="${EPOCH_BUDGET:-810}"
tasks="${TASKS:-digits us-births sequential-mnist}"
births="${KILN_DATA:-$HOME/.cache/kiln}/us-births/births.csv"
case " $tasks " in
    *" us-births"*) [ -s "$births" ] || { echo "$births is missing: datasets/fetch.sh us-births" >&2; exit 1; } ;;
esac
tmp="${KEEP:-$(mktemp -d)}"
mkdir -p "$tmp"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT

task_flags() {
    case "$1" in
        digits) echo "--dataset digits --hidden 16|64|128,64 --dropout 0..0.5 --batch-size 16|32|64" ;;
        house-prices) echo "--dataset house-prices --hidden 16|64|128,64 --dropout 0..0.5 --batch-size 16|32|64" ;;
        airline) echo "--dataset airline --model lstm --hidden 8|16|32|64 --layers 1..2 --batch-size 8|16|32" ;;
        us-births) echo "--dataset csv:$births --target births --task regression --hidden 16|64|128,64 --dropout 0..0.5 --batch-size 16|32|64" ;;
        us-births-series) echo "--dataset series-csv:$births --column births --model lstm --hidden 8|16|32|64 --layers 1..2 --batch-size 16|32|64" ;;
        sequential-mnist) echo "--dataset sequential-mnist --train-samples 3000 --model lstm --hidden 8|16|32|64 --layers 1..2 --batch-size 16|32|64" ;;
    esac
}
studies() {
    echo "random --sampler random"
    echo "tpe --sampler tpe"
    echo "tpe+asha --sampler tpe --pruner asha --min-epochs ${MIN_EPOCHS:-1} --reduction-factor 3"
}

start=$(date +%s)
for task in $tasks; do
    for seed in $seeds; do
        while read -r name flags; do
            dir="$tmp/$task/$name-$seed"
            mkdir -p "$tmp/$task"
            # shellcheck disable=SC2046
            "$kiln" tune --quiet --dir "$dir" --study-seed "$seed" --epoch-budget "$budget" \
                $flags $(task_flags "$task") --lr 1e-4..3e-1:log --epochs 27 --patience 0 --lr-schedule cosine ${EXTRA:-} \
                > "$dir.out" 2>&1 || { cat "$dir.out" >&2; exit 1; }
        done < <(studies)
    done
done
python3 - "$tmp" "$seeds" "$(( $(date +%s) - start ))" "$tasks" <<'PY'
import csv, json, os, sqlite3, statistics, sys

root, seeds, seconds, tasks = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4].split()

def anytime(study):
    """(epochs spent, best val_loss so far) after every epoch any trial reported, in the order
    the study recorded them; and the study's trials."""
    with open(os.path.join(study, "tune.csv")) as f:
        trials = list(csv.DictReader(f))
    db = sqlite3.connect(os.path.join(study, "study.db"))
    curve, best = [], float("inf")
    for spent, (value,) in enumerate(db.execute("SELECT value FROM trial_values ORDER BY rowid"), 1):
        best = min(best, value)
        curve.append((spent, best))
    return trials, curve

for task in tasks:
    per = {}
    for seed in seeds:
        for name in ["random", "tpe", "tpe+asha"]:
            trials, curve = anytime(os.path.join(root, task, "%s-%s" % (name, seed)))
            per[(name, seed)] = curve
            print(json.dumps({"task": task, "study": name, "seed": int(seed),
                              "trials": len(trials),
                              "pruned": sum(t["state"] == "pruned" for t in trials),
                              "epochs": curve[-1][0], "best_val_loss": curve[-1][1]}))
    reach = []
    for seed in seeds:
        target = per[("random", seed)][-1][1]
        hit = next((e for e, b in per[("tpe+asha", seed)] if b <= target), None)
        reach.append(hit / per[("random", seed)][-1][0] if hit else float("inf"))
    med = lambda name: statistics.median(per[(name, s)][-1][1] for s in seeds)
    print(json.dumps({"task": task, "median_best": {n: med(n) for n in ["random", "tpe", "tpe+asha"]},
                      "tpe_beats_random_seeds": sum(per[("tpe", s)][-1][1] < per[("random", s)][-1][1] for s in seeds),
                      "asha_epochs_to_random_best_share": reach,
                      "asha_median_share": statistics.median(reach)}))
print(json.dumps({"seconds": seconds}))
PY
