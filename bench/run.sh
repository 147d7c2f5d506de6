#!/usr/bin/env bash
# `make bench`: every benchmark prints its figures next to a baseline
# measured in the same run (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run='^$' -bench=. -benchtime=3x ./store/... ./sandbox/...
