# storefs: `make build`, `make test` (what CI runs), `make bench`, `make demo`.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# How long each fuzz target runs in `make fuzz` (`make test` runs each briefly).
FUZZTIME ?= 60s

.PHONY: build test vet unit fuzz-short fuzz bench demo clean

# A static binary: every sandboxed build re-executes it, and without cgo
# (only net and os/user use it) it starts 1 to 3 ms sooner; without
# urfave/cli's man-page generator (and its markdown package's big tables
# to initialise) about 1 ms sooner again.
build:
	CGO_ENABLED=0 $(GO) build -tags urfave_cli_no_docs -o bin/storefs ./cmd/storefs

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -timeout 30m ./...

# Each fuzz target for a few seconds, starting from its seed corpus.
FUZZ_TARGETS := ./store/nar:FuzzRestore ./store/nar:FuzzReader ./store:FuzzParseDerivation ./store:FuzzParseDerivationJSON ./store:FuzzDerivationATermToJSON ./store:FuzzParseHash ./store:FuzzBase32 ./store:FuzzParsePath ./store/cache:FuzzParseNARInfo ./store/cache:FuzzNARPath ./store/cache:FuzzFetch
fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name"; \
	  $(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=5s $$pkg || exit 1; \
	done

fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name"; \
	  $(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

test: build vet unit fuzz-short

# Installs its dependencies (nix-bin, gnuplot…) before building: see bench/README.md.
bench:
	bash bench/run.sh

demo: build
	bash scripts/demo.sh

clean:
	rm -rf bin
