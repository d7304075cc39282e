# Hearth: the two commands a person needs are `make run` and `make test`.
GO ?= go
NPM ?= npm

.PHONY: run test test-go test-interop test-deps bench build

# Root installs packages directly; anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

build:
	$(GO) build -o bin/hearth ./cmd/hearth

run:
	$(GO) run ./cmd/hearth run

test: test-go test-interop

# Debian packages the tests need: a private D-Bus session and GNOME
# Keyring's Secret Service for the OS keyring test.
test-deps:
	@command -v dbus-daemon >/dev/null && command -v gnome-keyring-daemon >/dev/null && command -v secret-tool >/dev/null || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dbus gnome-keyring libsecret-tools; }

test-go: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-interop: build
	cd test/interop && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/interop && HEARTH_BIN=$(CURDIR)/bin/hearth node --test --test-reporter=spec

bench: build
	$(GO) run ./cmd/hearth-bench -hearth bin/hearth
