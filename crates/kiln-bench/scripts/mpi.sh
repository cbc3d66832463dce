#!/usr/bin/env bash
# Data parallelism over processes on one machine: `kiln train` (built with `--features mpi`)
# alone and under `mpirun -np 2` and `-np 4` (the global batch the same), the MNIST MLP
# (784-128-64-10, batch 64, one epoch) and the digits CNN (batch 32, 3 epochs), rounds alternating; prints each
# run's training samples per second and, from rank 0's log, the share of the training pass spent
# exchanging gradients and outputs (waiting for the other ranks included).
#
#   crates/kiln-bench/scripts/mpi.sh KILN [ROUNDS]   (default 2 rounds)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,8p "$0" >&2; exit 2; }
kiln="$1"
rounds="${2:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
models=("mlp --dataset mnist --batch-size 64 --epochs 1" "cnn --dataset digits --batch-size 32 --epochs 3")
for round in $(seq "$rounds"); do
    for model in "${models[@]}"; do
        for n in 1 2 4; do
            out="$tmp/run-$round-$n"
            rm -rf "$out"
            cmd=("$kiln" train --quiet --model $model --patience 0 --dropout 0 --out "$out")
            if [ "$n" = 1 ]; then
                RUST_LOG=kiln_train=info "${cmd[@]}" > "$tmp/log" 2>&1
            else
                RUST_LOG=kiln_train=info mpirun --allow-run-as-root --oversubscribe -np "$n" \
                    "${cmd[@]}" > "$tmp/log" 2>&1
            fi
            python3 - "$out" "$tmp/log" "$n" "$model" "$round" <<'PY'
import json, re, sys
out, log, n, model, rnd = sys.argv[1:]
m = json.load(open(f"{out}/metrics.json"))
text = re.sub(r"\x1b\[[0-9;]*m", "", open(log).read())
shares = [float(s) for s in re.findall(r"\((\d+)%\) rank=0", text)]
print(json.dumps({"model": model.split()[0], "round": int(rnd), "ranks": int(n),
                  "samples_per_sec": round(m["samples_per_sec"], 1),
                  "exchange_percent": shares}))
PY
        done
    done
done
