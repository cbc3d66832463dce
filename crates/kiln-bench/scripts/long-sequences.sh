#!/usr/bin/env bash
# Long sequences side by side: the benchmark transformer (token ids -> embedding 32 + learned
# positions -> one encoder block, 2 heads, d_ff 32 -> mean pooling -> 2 classes, Adam) at each
# --seq-len, one epoch after a warm-up, validation excluded; samples/s and the process's peak
# resident memory (GNU time's %M).
#
#   crates/kiln-bench/scripts/long-sequences.sh KILN_BENCH [OLD_KILN_BENCH] [-- LENGTHS...]
#
# OLD_KILN_BENCH (a binary built before a change) runs beside the new one; with PYTHON set (a
# venv with torch, outside the repository), ../shared/peers/torch_reference.py transformer
# --seq-len L runs too, on the same number of training samples. SAMPLES (default 512) trained
# per epoch, BATCH (default 64). Prints one JSON line per length and program.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,12p "$0" >&2; exit 2; }
new="$1"
shift
old=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    old="$1"
    shift
fi
[ "${1:-}" = "--" ] && shift
lengths="${*:-128 256 512 1024}"
SAMPLES="${SAMPLES:-512}"
BATCH="${BATCH:-64}"
here="$(cd "$(dirname "$0")" && pwd)"
torch_reference="$here/../../../../shared/peers/torch_reference.py"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# run LABEL LENGTH COMMAND...: the command's last JSON line's samples/s, and its peak memory.
run() {
    local label="$1" len="$2"
    shift 2
    if ! /usr/bin/time -o "$tmp/rss" -f %M "$@" > "$tmp/out" 2> "$tmp/err"; then
        echo "{\"program\": \"$label\", \"seq_len\": $len, \"failed\": \"$(tail -1 "$tmp/err" | tr -d '"')\"}"
        return
    fi
    python3 - "$label" "$len" "$tmp/out" "$tmp/rss" <<'PY'
import json, sys
label, length, out, rss = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
line = json.loads(open(out).read().strip().splitlines()[-1])
kb = int(open(rss).read().split()[-1])
print(json.dumps({"program": label, "seq_len": length, "samples_per_sec": line["samples_per_sec"],
                  "peak_rss_gb": round(kb / 1e6, 2)}))
PY
}

# kiln-bench trains 80% of its samples.
kiln_samples=$((SAMPLES * 5 / 4))
for len in $lengths; do
    run kiln "$len" "$new" transformer --only kiln --runs 1 --backend flex --seq-len "$len" \
        --batch-size "$BATCH" --samples "$kiln_samples"
    if [ -n "$old" ]; then
        run kiln-old "$len" "$old" transformer --only kiln --runs 1 --backend flex --seq-len "$len" \
            --batch-size "$BATCH" --samples "$kiln_samples"
    fi
    if [ -n "${PYTHON:-}" ]; then
        run pytorch "$len" "$PYTHON" "$torch_reference" transformer --seq-len "$len" \
            --batch "$BATCH" --samples "$SAMPLES"
    fi
done
