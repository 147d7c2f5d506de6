#!/usr/bin/env bash
# The storefs demo: a store in a scratch state directory, Debian's static
# busybox imported as Nix would import it, and a derivation added from JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${STOREFS_DEMO_STATE:-/tmp/storefs-demo}
sf() { bin/storefs --state-dir "$state" "$@"; }
rm -rf "$state"
mkdir -p "$state/import/busybox/bin"
cp /bin/busybox "$state/import/busybox/bin/busybox"

echo "== import busybox (as Nix's builtins.path would)"
bb=$(sf add "$state/import/busybox")
echo "$bb"
sf path-info --json "$bb"

echo "== add a derivation written as JSON (examples/hello.json)"
drv=$(sf derivation add examples/hello.json)
echo "$drv"
echo "its output: $(sf query --outputs "$drv")"
sf derivation show "$drv"
