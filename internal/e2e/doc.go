// Package e2e holds Hearth's integration tests: they build the hearth
// binary, start real daemons (one, several federating over loopback TLS,
// or on a LAN of network namespaces) and drive them with mautrix-go, the
// way a user's client and other servers would. Everything is in _test.go
// files; this file only names the package.
package e2e
