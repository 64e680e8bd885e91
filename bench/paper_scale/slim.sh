#!/usr/bin/env bash
# Fewer device calls: a call carries at most 64 MiB, the working tree included, so every MB of the tree is a MB less
# of model part per call. The tracked folders a GPU run never reads (docs/, bench/results/, and resources/pretrained/,
# which only a config with gist.pretrained: <shipped path> reads) can leave the tree while the parts travel.
#   bash bench/paper_scale/slim.sh out          move them to $STASH (default ../slim_stash); print the tree's size and the
#                                               largest part that fits beside it
#   bash bench/paper_scale/slim.sh recut P MB   re-cut device_in/P1.. (pack.sh's parts) into parts of <= MB, same file
#                                               and checksum (device.sh joins either)
#   bash bench/paper_scale/slim.sh back         move them back (before any commit: out of the tree they read as deleted)
# Session 26: tree 36.5 -> 9.6 MB, the Qwen GGUF in 9 parts of 54.6 MB instead of 17 of 28.9, wheels + gemlite + the
# A/B's data in one call: 10 calls where there were 20.
set -euo pipefail
STASH=${STASH:-$(realpath -m ../slim_stash)}
DIRS="docs bench/results resources/pretrained"
case ${1:-} in
out)
    [ ! -e "$STASH" ] || { echo "$STASH exists: 'slim.sh back' first" >&2; exit 1; }
    git diff --quiet HEAD -- $DIRS || { echo "uncommitted changes under $DIRS: commit them first" >&2; exit 1; }
    for d in $DIRS; do mkdir -p "$STASH/$(dirname "$d")" && mv "$d" "$STASH/$d"; done
    # the moved files still list as tracked (deleted): count the files that are here
    bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}' || true)
    echo "tree: $((bytes / 1000000)) MB; a part of up to $(( (64 * 1048576 - bytes) / 1000000 - 1 )) MB fits a call beside it"
    ;;
recut)
    p=${2:?prefix}; mb=${3:?MB}
    dev=device_in; tmp=$(mktemp -d)
    parts=$(for f in "$dev/$p"[0-9]*/"${p}"_part_*; do echo "$(basename "$f") $f"; done | sort | cut -d' ' -f2)
    cat $parts >"$tmp/whole"
    [ "$(sha256sum "$tmp/whole" | cut -d' ' -f1)" = "$(cat "$dev/${p}1/SHA256")" ] || { echo "$p: the parts do not make the file" >&2; exit 1; }
    cp "$dev/${p}1/NAME" "$dev/${p}1/SHA256" "$tmp/" && rm -rf "$dev/$p"[0-9]*
    n=$(( ($(stat -c %s "$tmp/whole") + mb * 1000000 - 1) / (mb * 1000000) ))
    split -n "$n" -d "$tmp/whole" "$tmp/${p}_part_"
    for i in $(seq 1 "$n"); do mkdir -p "$dev/$p$i" && mv "$tmp/$(printf '%s_part_%02d' "$p" $((i - 1)))" "$dev/$p$i/"; done
    mv "$tmp/NAME" "$tmp/SHA256" "$dev/${p}1/" && echo "$n" >"$dev/${p}1/COUNT" && rm -rf "$tmp"
    echo "$p: $n parts"
    ;;
back)
    for d in $DIRS; do [ ! -e "$STASH/$d" ] || { rm -rf "$d" && mkdir -p "$(dirname "$d")" && mv "$STASH/$d" "$d"; }; done
    rm -rf "$STASH" && git status --short -- $DIRS | head
    ;;
*) sed -n 2,12p "$0"; exit 2 ;;
esac
