package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestReachabilitySelfCheck: a daemon with a trusted notary asks it to
// fetch the daemon's own key from the network. hs1, which hs2 can reach,
// reports itself reachable; hs3, whose address hs2 has wrong (as for a
// laptop behind NAT), reports that other servers cannot reach it.
func TestReachabilitySelfCheck(t *testing.T) {
	t.Parallel()
	net := newFedNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1, hs2, hs3 := net.Daemons["hs1.test"], net.Daemons["hs2.test"], net.Daemons["hs3.test"]
	for _, d := range []*Daemon{hs1, hs3} {
		d.Extra = append(d.Extra, "--trusted-notaries", "hs2.test")
	}
	// hs2 looks for hs3 where nothing listens.
	var table []string
	for _, name := range []string{"hs1.test", "hs2.test"} {
		table = append(table, name+"="+net.addrs[name])
	}
	table = append(table, "hs3.test="+freeAddr(t))
	hs2.Extra = append(hs2.Extra, "--federation-servers", strings.Join(table, ","))
	for _, d := range []*Daemon{hs2, hs1, hs3} {
		d.Start()
	}
	reachable := func(d *Daemon) (*bool, string) {
		code, out, errOut := runHearth(t, "status", "--json", "--data-dir", d.DataDir, "--client-listen", d.Addr)
		if code != 0 {
			t.Fatalf("hearth status: exit %d: %s", code, errOut)
		}
		var st struct {
			Reachable *bool `json:"reachable"`
		}
		noErr(t, json.Unmarshal([]byte(out), &st), "parse status")
		return st.Reachable, out
	}
	for _, c := range []struct {
		d    *Daemon
		want bool
	}{{hs1, true}, {hs3, false}} {
		got := waitFor(t, "the self-check of "+c.d.ServerName(), func() (string, bool) {
			r, out := reachable(c.d)
			return out, r != nil
		})
		if r, _ := reachable(c.d); *r != c.want {
			t.Errorf("%s reports reachable=%v, want %v:\n%s", c.d.ServerName(), *r, c.want, got)
		}
	}
	if r, _ := reachable(hs2); r != nil {
		t.Errorf("hs2 has no notary but reports reachable=%v", *r)
	}
}
