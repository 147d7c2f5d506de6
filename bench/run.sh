#!/usr/bin/env bash
# `make bench`: storefs against Nix 2.8 and against the hardware's limits,
# alternately, in one run (see bench/README.md). Installs what it needs,
# builds storefs and the harness, runs it, and leaves in bench/out/:
# results.md (the table), results.json, results.png and logs/.
#
#   BENCH_QUICK=1   a smoke run: 2 pairs, smaller sizes (a few minutes)
#   BENCH_PAIRS=N   pairs per workload (default 5)
#   BENCH_ONLY=a,b  only these workload ids (dag-j1 dag-j2 chain trivial
#                   subst-dag subst-big narscan read-cold read-warm
#                   find-cold find-warm lookup-build stampede)
#   BENCH_WORK=DIR  work directory to use and keep (default: a temporary
#                   directory under /var/tmp, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if [ "$(id -u)" != 0 ]; then
  echo "bench: run as root (builds in the sandbox, a FUSE mount, drop_caches)" >&2
  exit 1
fi
export PATH="/usr/local/go/bin:$PATH"

# What storefs needs to build, plus the peer (nix-bin 2.8), the builder
# (busybox-static) and gnuplot for the chart.
bash scripts/install-deps
for p in nix-bin busybox-static gnuplot-nox; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
  fi
done

mkdir -p bench/out/bin
CGO_ENABLED=0 go build -tags urfave_cli_no_docs -o bin/storefs ./cmd/storefs
go build -o bench/out/bin/sfbench ./bench/cmd/sfbench

# A private mount namespace: the benchmark's FUSE mount is invisible to
# the rest of the machine and cannot outlive the run.
status=0
unshare --mount --propagation private bench/out/bin/sfbench run -storefs bin/storefs -out bench/out || status=$?
echo "make bench: $(( $(date +%s) - start )) s in all (dependencies, build and harness)"
exit $status
