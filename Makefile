# Hearth: the two commands a person needs are `make run` and `make test`.
GO ?= go
NPM ?= npm

.PHONY: run test test-go test-interop test-deps bench build dist

# Root installs packages directly; anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# goolm selects mautrix's pure-Go Olm (no cgo, no libolm): the call
# agent's voicemail and echo devices are E2EE devices (calls/agent).
build:
	$(GO) build -tags goolm -o bin/hearth ./cmd/hearth

run:
	$(GO) run -tags goolm ./cmd/hearth run

test: test-go test-interop

# Debian packages the tests need: a private D-Bus session and GNOME
# Keyring's Secret Service for the OS keyring test, systemd-analyze to
# check the service unit, Chromium for the web console test, iproute2's
# ip for the LAN tests in network namespaces (looked for in /usr/sbin,
# which a user's PATH may not hold).
TEST_TOOLS := dbus-daemon gnome-keyring-daemon secret-tool systemd-analyze chromium
test-deps:
	@for t in $(TEST_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing=1; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dbus gnome-keyring libsecret-tools systemd chromium iproute2; \
	fi

# goolm selects mautrix's pure-Go Olm, so the E2EE tests
# (internal/e2e/crypto_test.go, calls/agent) build without cgo or libolm.
test-go: test-deps
	$(GO) vet -tags goolm ./...
	$(GO) test -tags goolm -count=1 ./...

test-interop: build test-deps
	cd test/interop && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/interop && HEARTH_BIN=$(CURDIR)/bin/hearth node --test --test-reporter=spec

bench: build
	$(GO) run ./cmd/hearth-bench -hearth bin/hearth

# Release artifacts for every platform into dist/ (packaging/README.md).
dist:
	$(GO) run ./cmd/hearth-dist -out dist
