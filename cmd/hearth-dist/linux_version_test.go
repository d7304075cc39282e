package main

import "testing"

// TestPackageVersion: git describe's forms become .deb/.rpm versions that
// sort in build order (the dist test has dpkg compare them for real).
func TestPackageVersion(t *testing.T) {
	for in, want := range map[string]string{
		"0.4.0":                   "0.4.0",
		"0.4.0-12-gabc1234":       "0.4.0+12.gabc1234",
		"0.4.0-12-gabc1234-dirty": "0.4.0+12.gabc1234.dirty",
		"0.4.0-dirty":             "0.4.0+dirty",
		"abc1234":                 "0.0.0+git.abc1234",
		"abc1234-dirty":           "0.0.0+git.abc1234.dirty",
		"1.2.3-rc1":               "1.2.3~rc1",
		"1.2.3-rc.2-4-gabc1234":   "1.2.3~rc.2+4.gabc1234",
		"1.2.3-foo":               "0.0.0+git.1.2.3.foo",
	} {
		if got := packageVersion(in); got != want {
			t.Errorf("packageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
