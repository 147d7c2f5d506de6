#!/usr/bin/env bash
# The storefs demo: a store mounted at /nix/store (inside a private mount
# namespace, so the machine's /nix/store is untouched), where reading an
# output that does not exist yet builds it, and reading a path that a
# binary cache has substitutes it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  # A private mount namespace: our /nix/store mount is invisible outside
  # and disappears with us.
  exec unshare --mount --propagation private "$0" --inside
fi

sf="$PWD/bin/storefs"
work=${STOREFS_DEMO_DIR:-/tmp/storefs-demo}
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"
state="$work/state"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "a binary cache with one path in it (made by another storefs store, signed)"
mkdir -p "$work/other/motd"
echo "This file came from a binary cache." > "$work/motd.txt"
motd=$("$sf" --state-dir "$work/other" add "$work/motd.txt" --name motd)
"$sf" key generate demo-key-1 "$work/key.sec" "$work/key.pub"
"$sf" --state-dir "$work/other" copy --to "file://$work/cache?compression=zstd&secret-key=$work/key.sec" "$motd"
echo "cache at file://$work/cache holds $motd"

say "import Debian's static busybox as Nix's builtins.path would"
mkdir -p "$work/import/busybox/bin"
cp /bin/busybox "$work/import/busybox/bin/busybox"
"$sf" --state-dir "$state" add "$work/import/busybox"

say "add two derivations written as JSON (examples/)"
lib_drv=$("$sf" --state-dir "$state" derivation add examples/greeting-lib.json)
lib_out=$("$sf" --state-dir "$state" query --outputs "$lib_drv")
cat > "$work/hello.json" <<JSON
{
  "name": "hello",
  "system": "x86_64-linux",
  "builder": "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox/bin/busybox",
  "args": ["sh", "-e", "-c", "mkdir \$out && { cat \$lib/words; echo 'built on first lookup'; } > \$out/greeting"],
  "inputSrcs": ["/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"],
  "inputDrvs": {"$lib_drv": ["out"]},
  "outputs": {"out": {}},
  "env": {"name": "hello", "lib": "$lib_out"}
}
JSON
hello_drv=$("$sf" --state-dir "$state" derivation add "$work/hello.json")
hello=$("$sf" --state-dir "$state" query --outputs "$hello_drv")
echo "$hello_drv -> $hello (not built yet)"

say "mount the store at /nix/store"
# A tmpfs over /nix, inside our namespace only, holds the mountpoint, so
# that not even an empty /nix/store appears on the machine.
[ -d /nix ] || mkdir /nix
mount -t tmpfs -o mode=755 storefs-demo /nix
mkdir /nix/store
"$sf" --state-dir "$state" \
  --option substituters "file://$work/cache" \
  --option trusted-public-keys "$(cat "$work/key.pub")" \
  mount /nix/store 2> "$work/mount.log" &
mount_pid=$!
trap 'kill -TERM $mount_pid 2>/dev/null; wait $mount_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$state/daemon.sock" ] && break; sleep 0.1; done
ls /nix/store

say "cat $hello/greeting  (the lookup builds it, and its input, transparently)"
time cat "$hello/greeting"
say "again: now it is served from the store"
time cat "$hello/greeting"

say "cat $motd  (the lookup substitutes it from the binary cache)"
cat "$motd"

say "run busybox straight from the store"
/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox/bin/busybox uname -s

say "the store now holds"
ls /nix/store
"$sf" --state-dir "$state" path-info --closure-size "$hello"

kill -TERM $mount_pid
wait $mount_pid || true
trap - EXIT
say "unmounted; the daemon's log:"
cat "$work/mount.log"
