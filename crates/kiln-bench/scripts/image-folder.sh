#!/usr/bin/env bash
# Figures for `--dataset images:DIR` (streamed image files): writes the 60,000 MNIST training
# digits as PNG files (one folder per class), 10,000 of them again, and 2,000 enlarged to
# 224x224 as PNG and as JPEG; measures kiln's reader (images decoded per second on this
# machine's cores, batches of 64, as the loader reads them); then trains the `mnist` CNN one epoch on the 60,000 files
# and on MNIST held in memory (`--dataset mnist`, the same 60,000 digits), and on the 10,000
# files and on the 2,000 of 224x224 (global pooling), each under /usr/bin/time for its peak
# resident memory; and 3 epochs on the 2,000 of 224x224 read at 64x64, with and without
# --image-cache (the second and third epochs read the decoded images from memory). Prints JSON
# lines.
#
#   crates/kiln-bench/scripts/image-folder.sh KILN IMAGE_FOLDER
#   (IMAGE_FOLDER: target/release/image_folder, `cargo build --release -p kiln-bench`)
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,11p "$0" >&2; exit 2; }
kiln="$1"
tool="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$tool" write "$tmp/mnist60k" --count 60000
"$tool" write "$tmp/mnist10k" --count 10000
"$tool" write "$tmp/big2k" --count 2000 --size 224
"$tool" write "$tmp/jpeg2k" --count 2000 --size 224 --format jpg
"$tool" decode "$tmp/mnist60k"
"$tool" decode "$tmp/big2k"
"$tool" decode "$tmp/big2k" --size 64
"$tool" decode "$tmp/jpeg2k"
"$tool" decode "$tmp/big2k" --size 64 --cache-mb 64

train() {
    local name="$1"
    shift
    /usr/bin/time -f "%M" -o "$tmp/$name.rss" "$kiln" train --quiet --model cnn --epochs "${epochs:-1}" \
        --patience 0 --out "$tmp/$name" "$@" > /dev/null
    python3 - "$tmp" "$name" <<'PY'
import json, sys
tmp, name = sys.argv[1:]
m = json.load(open(f"{tmp}/{name}/metrics.json"))
rss_kb = int(open(f"{tmp}/{name}.rss").read().split()[-1])
print(json.dumps({"run": name, "samples_per_sec": round(m["samples_per_sec"], 1),
                  "train_seconds": round(m["train_seconds"], 1),
                  "test_accuracy": m["test_accuracy"], "peak_rss_mb": round(rss_kb / 1024)}))
PY
}
train files60k --dataset "images:$tmp/mnist60k" --channels 1 --validation-split 0.2
train memory60k --dataset mnist --validation-split 0.2
train files10k --dataset "images:$tmp/mnist10k" --channels 1 --validation-split 0.2
train files224 --dataset "images:$tmp/big2k" --channels 1 --validation-split 0.2
epochs=3 train small224 --dataset "images:$tmp/big2k" --channels 1 --image-size 64x64 --validation-split 0.2
epochs=3 train small224cached --dataset "images:$tmp/big2k" --channels 1 --image-size 64x64 \
    --validation-split 0.2 --image-cache 64M
