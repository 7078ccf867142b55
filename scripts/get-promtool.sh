#!/usr/bin/env bash
# Put promtool (Prometheus' rule/config checker) at .venv/tools/promtool for tests/test_deploy.py.
#   1. already there and runs: nothing to do;
#   2. promtool on PATH: symlink it;
#   3. otherwise: `apt-get download prometheus` (Debian's package), unpack it and copy usr/bin/promtool.
# Idempotent; prints one line saying what it did; exits non-zero with a message if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

dest_dir=.venv/tools
dest=$dest_dir/promtool

if [[ -x $dest ]] && "$dest" --version >/dev/null 2>&1; then
    echo "promtool already at $dest ($("$dest" --version 2>&1 | head -n1))"
    exit 0
fi

mkdir -p "$dest_dir"
rm -f "$dest"

if found=$(command -v promtool 2>/dev/null) && [[ -n $found ]]; then
    ln -s "$found" "$dest"
    echo "promtool: linked $dest -> $found"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "get-promtool: promtool is not on PATH and apt-get/dpkg are missing;" \
        "install Prometheus' promtool and put it on PATH (or set PROMTOOL=/path/to/promtool)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# apt-get download works without root; as root it warns that the _apt sandbox can't read the
# temp dir, which is harmless. On a machine whose package lists were never fetched it finds
# nothing: as root, fetch them once (apt-get update) and try again.
download() { (cd "$tmp" && apt-get download prometheus >"$tmp/apt.log" 2>&1); }
if ! download; then
    if [[ $(id -u) == 0 ]] && apt-get update -qq >"$tmp/update.log" 2>&1 && download; then
        :
    else
        cat "$tmp/apt.log" >&2
        echo "get-promtool: 'apt-get download prometheus' failed (run 'apt-get update' first," \
            "or install promtool and put it on PATH / set PROMTOOL)" >&2
        exit 1
    fi
fi

deb=$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n1)
if [[ -z $deb ]]; then
    echo "get-promtool: apt-get download produced no prometheus .deb" >&2
    exit 1
fi

dpkg -x "$deb" "$tmp/root"
if [[ ! -f $tmp/root/usr/bin/promtool ]]; then
    echo "get-promtool: $(basename "$deb") holds no usr/bin/promtool" >&2
    exit 1
fi

cp "$tmp/root/usr/bin/promtool" "$dest"
chmod 0755 "$dest"
if ! "$dest" --version >/dev/null 2>&1; then
    echo "get-promtool: $dest does not run" >&2
    exit 1
fi
echo "promtool: installed $dest from $(basename "$deb") ($("$dest" --version 2>&1 | head -n1))"
