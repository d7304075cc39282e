# Hearth: the two commands a person needs are `make run` and `make test`.
GO ?= go
NPM ?= npm

.PHONY: run test test-go test-interop bench build fuzz

build:
	$(GO) build -o bin/hearth ./cmd/hearth

run:
	$(GO) run ./cmd/hearth run

test: test-go test-interop

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-interop: build
	cd test/interop && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/interop && HEARTH_BIN=$(CURDIR)/bin/hearth node --test --test-reporter=spec

bench: build
	$(GO) run ./cmd/hearth-bench -hearth bin/hearth
