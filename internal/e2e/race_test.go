//go:build race

package e2e

// raceEnabled makes TestMain build the daemon with the race detector too.
const raceEnabled = true
