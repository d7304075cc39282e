//go:build goolm

package e2e

import "testing"

// TestVerifyAcrossServers is TestNearbyVerifyOverLAN over ordinary
// federation: alice on hs1.test verifies bob on hs2.test with SAS, the two
// daemons federating over TLS on loopback (fednet_test.go). See
// verifyBySAS.
func TestVerifyAcrossServers(t *testing.T) {
	t.Parallel()
	net := startFedNet(t, "hs1.test", "hs2.test")
	verifyBySAS(t, net.Daemons["hs1.test"].Register("alice"), net.Daemons["hs2.test"].Register("bob"))
}
