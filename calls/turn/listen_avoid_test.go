package turn

import (
	"net"
	"testing"
)

// TestFreePortAvoidsReserved: the relay's fallback to a free port never
// takes a port the daemon reserved for its own listeners. The kernel
// hands out free ports at random, so 500 picks against 500 reserved ports
// would hit one about nine times without the check.
func TestFreePortAvoidsReserved(t *testing.T) {
	var avoid []int
	reserved := map[int]bool{}
	for range 500 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		u.Close()
		if !reserved[p] {
			reserved[p] = true
			avoid = append(avoid, p)
		}
	}
	for range 500 {
		udp, tcp, err := listenPair("127.0.0.1:0", avoid...)
		if err != nil {
			t.Fatal(err)
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		udp.Close()
		tcp.Close()
		if reserved[p] {
			t.Fatalf("took reserved port %d", p)
		}
	}
}
