package packaging

import (
	"encoding/xml"
	"strings"
	"testing"
)

// plistDict reads the top-level dict of a property list: each key with its
// string value, or its array of strings.
func plistDict(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	var doc struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Text    string   `xml:",chardata"`
				Strings []string `xml:"string"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("plist does not parse: %v\n%s", err, b)
	}
	out := map[string][]string{}
	var key string
	for _, it := range doc.Dict.Items {
		switch it.XMLName.Local {
		case "key":
			key = it.Text
		case "string":
			out[key] = []string{it.Text}
		case "array":
			out[key] = it.Strings
		}
	}
	return out
}

// The LaunchAgent runs the daemon with --log-file (the daemon rotates it;
// launchd would append to standard error's file forever) and keeps
// standard error apart for crashes only.
func TestLaunchAgentLogFile(t *testing.T) {
	b, err := LaunchAgent(Service{Args: []string{"/Applications/Hearth/hearth", "run", "--data-dir", "/Users/a b/Hearth"},
		LogFile: "/Users/a b/Hearth/hearth.log", Stderr: "/Users/a b/Hearth/hearth.stderr.log"})
	if err != nil {
		t.Fatal(err)
	}
	d := plistDict(t, b)
	want := "/Applications/Hearth/hearth run --data-dir /Users/a b/Hearth --log-file /Users/a b/Hearth/hearth.log"
	if got := strings.Join(d["ProgramArguments"], " "); got != want {
		t.Fatalf("ProgramArguments %q, want %q", got, want)
	}
	if got := d["StandardErrorPath"]; len(got) != 1 || got[0] != "/Users/a b/Hearth/hearth.stderr.log" {
		t.Fatalf("StandardErrorPath %q", got)
	}
}

// The systemd unit has no log file: the journal collects and rotates.
func TestSystemdUnitNoLogFile(t *testing.T) {
	b, err := SystemdUnit(Service{Args: []string{"/usr/bin/hearth", "run"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "--log-file") {
		t.Fatalf("systemd unit passes a log file:\n%s", b)
	}
}
