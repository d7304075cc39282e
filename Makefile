# Hearth: the two commands a person needs are `make run` and `make test`.
GO ?= go
NPM ?= npm

.PHONY: run test check test-unit test-go test-interop test-deps bench build dist dist-deps dist-deps-macos test-dist test-dist-deps

# Root installs packages directly; anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# goolm selects mautrix's pure-Go Olm (no cgo, no libolm): the call
# agent's voicemail and echo devices are E2EE devices (calls/agent).
build:
	$(GO) build -tags goolm -o bin/hearth ./cmd/hearth

run:
	$(GO) run -tags goolm ./cmd/hearth run

test: check test-go test-interop test-dist

# gofmt, vet (with every build tag the Makefile uses) and staticcheck with
# the settings in staticcheck.conf; nothing to install but Go.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -w these files:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags goolm ./...
	$(GO) vet -tags dist ./cmd/hearth-dist
	$(GO) run $(STATICCHECK) -tags goolm ./...

# Every Go test but the ones that start real hearth processes
# (internal/e2e) and the Node tests: about a minute.
test-unit:
	$(GO) test -tags goolm -count=1 $$($(GO) list ./... | grep -v /internal/e2e)

# Debian packages the tests need: a private D-Bus session and GNOME
# Keyring's Secret Service for the OS keyring test, systemd-analyze to
# check the service unit, Chromium for the web console test, iproute2's
# ip for the LAN tests in network namespaces (looked for in /usr/sbin,
# which a user's PATH may not hold).
TEST_TOOLS := dbus-daemon gnome-keyring-daemon secret-tool systemd-analyze chromium
test-deps:
	@for t in $(TEST_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing ip"; \
	if [ -n "$$missing" ] && ! command -v apt-get >/dev/null; then \
	  echo "make test needs these programs, which are missing:$$missing"; \
	  echo "This is not a Debian-like system (no apt-get): install them with your package manager"; \
	  echo "(Debian names: dbus gnome-keyring libsecret-tools systemd chromium iproute2), or run make test-unit."; \
	  exit 1; \
	fi; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dbus gnome-keyring libsecret-tools systemd chromium iproute2; \
	fi

# goolm selects mautrix's pure-Go Olm, so the E2EE tests
# (internal/e2e/crypto_test.go, calls/agent) build without cgo or libolm.
test-go: test-deps
	$(GO) test -tags goolm -count=1 ./...

test-interop: build test-deps
	cd test/interop && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/interop && HEARTH_BIN=$(CURDIR)/bin/hearth node --test --test-reporter=spec

# Every section three times (medians with min–max, load and a fsync probe
# per run), regenerating docs/performance.md's block and docs/bench.json.
# BENCH_ARGS adds flags, e.g. BENCH_ARGS='-sections throughput,sync'.
bench: build
	$(GO) run ./cmd/hearth-bench -hearth bin/hearth -runs 3 -write docs/performance.md $(BENCH_ARGS)

# Release artifacts for every platform into dist/ (packaging/README.md).
# VERSION=1.2.3 overrides git describe's version.
dist: dist-deps
	$(GO) run ./cmd/hearth-dist -out dist $(if $(VERSION),-version $(VERSION))

# Debian packages make dist and its test need: NSIS for the Windows
# installer; 7-Zip to list it, Wine (64-bit) to install it for real in
# the test, and Xvfb for the display Wine's notification area (the tray)
# needs.
DIST_PKGS := nsis p7zip-full wine wine64 xvfb
dist-deps:
	@if ! command -v makensis >/dev/null || ! command -v 7z >/dev/null || [ ! -x /usr/lib/wine/wine64 ] || ! command -v Xvfb >/dev/null; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DIST_PKGS); \
	fi

# The dist tests build the artifacts and install them for real (as root:
# dpkg in a Debian root made with debootstrap and cached under
# /var/cache/hearth-test-dist, mounts). They carry the dist build tag, so
# test-go does not run them; -v shows the measurements they print.
DIST_TOOLS := debootstrap rpm dpkg desktop-file-validate dbus-daemon dbus-send systemd-analyze
test-dist-deps:
	@for t in $(DIST_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap rpm dpkg desktop-file-utils dbus systemd; \
	fi

test-dist: dist-deps test-dist-deps
	$(GO) vet -tags dist ./cmd/hearth-dist
	$(SUDO) env PATH="$$PATH" $(if $(SUDO),HOME="$$HOME" GOCACHE="$$($(GO) env GOCACHE)" GOMODCACHE="$$($(GO) env GOMODCACHE)") HEARTH_TEST_DIST=1 $(GO) test -tags dist -count=1 -timeout 20m -v ./cmd/hearth-dist

# macOS: xorriso makes the .dmg; the test reads it back with 7z and
# compares the universal binary with llvm-lipo's.
dist test-dist: dist-deps-macos
dist-deps-macos:
	@command -v xorriso >/dev/null && command -v 7z >/dev/null && \
	  { command -v llvm-lipo || ls /usr/lib/llvm-*/bin/llvm-lipo; } >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends xorriso p7zip-full llvm; }
