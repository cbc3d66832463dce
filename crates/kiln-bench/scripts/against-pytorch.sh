#!/usr/bin/env bash
# kiln's training throughput beside PyTorch's for the same shapes, in one command:
#   crates/kiln-bench/scripts/against-pytorch.sh [mlp|cnn|lstm|transformer ...]
# Needs PyTorch (`pip install torch`) for $PYTHON (default python3) and ../shared/peers/torch_reference.py
# beside the project. Prints kiln-bench's JSON lines, then PyTorch's, per model.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON="${PYTHON:-python3}"
REFERENCE="${REFERENCE:-../shared/peers/torch_reference.py}"
[ -f "$REFERENCE" ] || { echo "missing $REFERENCE (the shared PyTorch reference script)" >&2; exit 2; }
"$PYTHON" -c "import torch" 2>/dev/null || { echo "$PYTHON has no torch: pip install torch" >&2; exit 2; }
cargo build --release -p kiln-bench --quiet
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(lstm transformer)
for model in "${models[@]}"; do
  ./target/release/kiln-bench "$model" --backend flex --runs 3
  "$PYTHON" "$REFERENCE" "$model"
done
