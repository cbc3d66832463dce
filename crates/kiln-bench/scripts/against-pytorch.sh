#!/usr/bin/env bash
# kiln beside PyTorch on this machine's CPU, in one command:
#
#   crates/kiln-bench/scripts/against-pytorch.sh [mlp cnn lstm transformer tta]
#
# Throughput (mlp, cnn, lstm, transformer): PAIRS (default 5) alternating runs of kiln's trainer
# (kiln-bench MODEL --only kiln: one epoch after a warm-up on 8 batches, validation excluded) and
# of ../shared/peers/torch_reference.py MODEL (one epoch after the same warm-up), the same number
# of training samples, shapes, batch 64 and Adam. Per model it prints every pair, then one JSON
# line: the medians of kiln's and PyTorch's samples/s, "vs_torch" (the median of the paired
# ratios kiln/PyTorch), the ratios themselves, and the GFLOP/s of both beside the machine's peak.
#
# PRECISION=bf16: each pair is three runs, kiln in bf16 (--precision bf16), kiln in f32 and
# PyTorch under CPU bf16 autocast (torch_reference.py --precision bf16); the JSON line adds
# "precision", "vs_f32" (the median of kiln bf16 / kiln f32 over the pairs, with the ratios)
# and the unit kiln's products ran on; tta runs both in PRECISION.
#
# Time to accuracy (tta): kiln-bench tta-mlp and tta-cnn against torch_time_to_accuracy.py
# (beside this script: ../shared/peers/torch_mnist_time_to_accuracy.py's recipe, with CPU bf16
# autocast under PRECISION=bf16) on real MNIST (datasets/fetch.sh mnist), the MLP to 97.5% and
# the CNN to 99.0% test accuracy; prints the training seconds of each and their ratio
# (kiln/PyTorch: below 1 is faster).
#
# PYTHON: a Python with torch (default python3); this script installs nothing. To make one:
#   python3 -m venv ~/torchenv && ~/torchenv/bin/pip install torch numpy
#   PYTHON=~/torchenv/bin/python crates/kiln-bench/scripts/against-pytorch.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=crates/kiln-bench/scripts
PYTHON="${PYTHON:-python3}"
PAIRS="${PAIRS:-5}"
PRECISION="${PRECISION:-f32}"
PEERS="${PEERS:-../shared/peers}"
MNIST="${KILN_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}/mnist"
[ -f "$PEERS/torch_reference.py" ] || { echo "missing $PEERS/torch_reference.py (the shared PyTorch scripts)" >&2; exit 2; }
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "$PYTHON has no torch. Make a Python that has it, outside the repository, and pass it:" >&2
    echo "  python3 -m venv ~/torchenv && ~/torchenv/bin/pip install torch numpy" >&2
    echo "  PYTHON=~/torchenv/bin/python $0 $*" >&2
    exit 2
fi
cargo build --release -p kiln-bench --quiet
bench="${CARGO_TARGET_DIR:-target}/release/kiln-bench"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Summarises the pairs in $log (one kiln line, then one torch line, per pair).
summarise() {
    "$PYTHON" - "$log" "$PRECISION" <<'EOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
precision = sys.argv[2]
kiln = [l for l in lines if l.get("framework") == "kiln" and l.get("precision", "f32") == precision]
torch = [l for l in lines if l.get("framework", "").startswith("torch")]
ratios = [k["samples_per_sec"] / t["samples_per_sec"] for k, t in zip(kiln, torch)]
k = statistics.median(l["samples_per_sec"] for l in kiln)
t = statistics.median(l["samples_per_sec"] for l in torch)
flop = kiln[0]["flop_per_sample"]
out = {
    "model": kiln[0]["model"], "pairs": len(ratios), "batch": 64, "precision": precision,
    "kiln_samples_per_sec": round(k), "torch_samples_per_sec": round(t),
    "vs_torch": round(statistics.median(ratios), 3),
    "ratios": [round(r, 3) for r in ratios],
    "kiln_gflops": round(k * flop / 1e9, 1), "torch_gflops": round(t * flop / 1e9, 1),
    "peak_gflops": round(kiln[0]["peak_gflops"], 1),
    "torch": torch[0]["framework"],
}
if precision != "f32":
    f32 = [l for l in lines if l.get("framework") == "kiln" and l.get("precision") == "f32"]
    own = [a["samples_per_sec"] / b["samples_per_sec"] for a, b in zip(kiln, f32)]
    out.update({
        "kiln_f32_samples_per_sec": round(statistics.median(l["samples_per_sec"] for l in f32)),
        "vs_f32": round(statistics.median(own), 3), "f32_ratios": [round(r, 3) for r in own],
        "unit": kiln[0].get("precision_unit"),
    })
print(json.dumps(out))
EOF
}

throughput() {
    local model="$1" samples
    case "$model" in
        mlp) samples=20000 ;; cnn|lstm) samples=4000 ;; transformer) samples=2000 ;;
    esac
    : > "$log"
    for _ in $(seq "$PAIRS"); do
        # kiln holds out 20% for validation (not timed): 5/4 of the samples trains on as many.
        "$bench" "$model" --backend flex --only kiln --runs 1 --samples $((samples * 5 / 4)) \
            --precision "$PRECISION" | tee -a "$log"
        if [ "$PRECISION" != f32 ]; then
            "$bench" "$model" --backend flex --only kiln --runs 1 --samples $((samples * 5 / 4)) \
                --precision f32 | tee -a "$log"
        fi
        "$PYTHON" "$PEERS/torch_reference.py" "$model" --samples "$samples" \
            --precision "$PRECISION" | tee -a "$log"
    done
    summarise
}

time_to_accuracy() {
    [ -f "$MNIST/train-images-idx3-ubyte" ] || { echo "no MNIST in $MNIST: datasets/fetch.sh mnist" >&2; exit 2; }
    for model in mlp cnn; do
        local kiln torch
        kiln="$("$bench" "tta-$model" --backend flex --precision "$PRECISION" | tee -a /dev/stderr | tail -n 1)"
        torch="$("$PYTHON" "$here/torch_time_to_accuracy.py" "$PEERS" "$MNIST" "$model" \
            --precision "$PRECISION" | tee -a /dev/stderr | tail -n 1)"
        "$PYTHON" - "$kiln" "$torch" <<'EOF'
import json, sys
k, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({
    "model": k["model"], "target": k["target"], "precision": t["precision"],
    "kiln_seconds": k["train_seconds"], "kiln_epochs": k["epochs"], "kiln_reached": k["reached"],
    "torch_seconds": t["train_seconds"], "torch_epochs": t["epoch"],
    "torch_reached": t["test_accuracy"] >= k["target"],
    "kiln_over_torch": round(k["train_seconds"] / t["train_seconds"], 3),
}))
EOF
    done
}

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp cnn lstm transformer tta)
for model in "${models[@]}"; do
    case "$model" in
        mlp|cnn|lstm|transformer) throughput "$model" ;;
        tta) time_to_accuracy ;;
        *) echo "unknown model $model (mlp, cnn, lstm, transformer, tta)" >&2; exit 2 ;;
    esac
done
