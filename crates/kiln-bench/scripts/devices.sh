#!/usr/bin/env bash
# Several devices of one process: `kiln train` on one flex device and with
# `--devices flex:0,flex:1` (the global batch the same), the MNIST MLP (784-128-64-10) and CNN
# (`--preset mnist`), batch 64, one epoch, alternating; prints each run's training samples per
# second (validation included) from its metrics.json. Give a second binary to alternate it
# with the first, both on two devices (before and after a change).
#
#   crates/kiln-bench/scripts/devices.sh KILN [ROUNDS]           (default 3 rounds)
#   crates/kiln-bench/scripts/devices.sh KILN ROUNDS OTHER_KILN  (MLP, two devices, A/B)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,9p "$0" >&2; exit 2; }
kiln="$1"
rounds="${2:-3}"
other="${3:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
speed() { python3 -c "import json,sys;print(round(json.load(open(sys.argv[1]))['samples_per_sec']))" "$1/metrics.json"; }
train() { # BINARY OUT FLAGS...
    local bin="$1" out="$2"
    shift 2
    "$bin" train --dataset mnist --epochs 1 --batch-size 64 --quiet --out "$out" "$@" >/dev/null
    speed "$out"
}
if [ -n "$other" ]; then
    for i in $(seq "$rounds"); do
        echo "round $i: first $(train "$kiln" "$tmp/a$i" --devices flex:0,flex:1)" \
            "second $(train "$other" "$tmp/b$i" --devices flex:0,flex:1)"
    done
    exit 0
fi
for model in mlp cnn; do
    flags=()
    [ "$model" = cnn ] && flags=(--model cnn --preset mnist)
    for i in $(seq "$rounds"); do
        one=$(train "$kiln" "$tmp/$model-one-$i" "${flags[@]}")
        two=$(train "$kiln" "$tmp/$model-two-$i" "${flags[@]}" --devices flex:0,flex:1)
        python3 -c "print('$model round $i: one device $one, two devices $two, ratio %.2f' % ($two / $one))"
    done
done
