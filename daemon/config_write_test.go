package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

const confBefore = "# my settings\nlog_level = warn\n\n# previews\nurl_previews = off\n"

// configClient starts a daemon whose hearth.conf holds confBefore and
// returns a control client for it.
func configClient(t *testing.T) (*controlclient.Client, string) {
	t.Helper()
	_, cfg := startTestDaemon(t)
	if err := os.WriteFile(cfg.File, []byte(confBefore), 0o600); err != nil {
		t.Fatal(err)
	}
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return controlclient.New(ep.Addr, ep.Socket, ep.Secret), cfg.File
}

// TestSetConfigRefusesNewline: a value with a newline would add a line of
// its own to hearth.conf (here: open registration). It is refused with the
// key named and the file is unchanged, byte for byte.
func TestSetConfigRefusesNewline(t *testing.T) {
	c, file := configClient(t)
	for _, value := range []string{"https://chat.example/\nregistration = open", "https://chat.example/\rregistration = open", "https://chat.example/\x00"} {
		err := c.SetConfig(context.Background(), "chat_client_url", value)
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "chat_client_url" {
			t.Errorf("set chat_client_url = %q: %v", value, err)
		}
	}
	if after, _ := os.ReadFile(file); string(after) != confBefore {
		t.Fatalf("hearth.conf changed:\n%s", after)
	}
}

// TestSetConfigChecksEachType: each kind of setting refuses a value of the
// wrong shape (and leaves the file alone), and takes a right one.
func TestSetConfigChecksEachType(t *testing.T) {
	c, file := configClient(t)
	ctx := context.Background()
	bad := map[string][]string{
		"lan_discovery":         {"yes", "ON"},                                                // on/browse/off
		"lan_interfaces":        {"eth0;wlan0", "eth0,", "$(x)"},                              // interface names
		"max_upload_bytes":      {"12abc", "-5", "1e9", "0x10"},                               // integer
		"client_listen":         {"localhost", "127.0.0.1:99999", "127.0.0.1:http", "a b:80"}, // host:port
		"federation_listen":     {":::", "0.0.0.0"},
		"chat_client_url":       {"ftp://chat.example/", "javascript:alert(1)", "chat.example", "https://"}, // http(s) URL
		"log_level":             {"loud"},                                                                   // enum
		"registration":          {"maybe"},
		"desktop_notifications": {"sometimes"},
		"key_store":             {"cloud"},
		"well_known_server":     {"a b", "matrix.example.org:0", "http://matrix.example.org"}, // host[:port]
		"room_version":          {"10 beta", "V10"},
		"registration_tokens":   {"has space", "semi;colon"},
		"server_name":           {"bad/name", "a_b"},
		"tls_cert":              {" /padded.pem", `"/quoted.pem"`, "/tab\tin.pem"}, // paths: no control characters, must read back
	}
	for key, values := range bad {
		for _, v := range values {
			var ce *control.Error
			if err := c.SetConfig(ctx, key, v); !errors.As(err, &ce) || ce.Status != 400 || ce.Field != key {
				t.Errorf("set %s = %q: %v", key, v, err)
			}
		}
	}
	if after, _ := os.ReadFile(file); string(after) != confBefore {
		t.Fatalf("hearth.conf changed by refused values:\n%s", after)
	}
	good := map[string]string{
		"chat_client_url":     "https://app.element.io/#/login?hs={homeserver}&loginToken={login_token}",
		"client_listen":       "127.0.0.1:8448",
		"well_known_server":   "matrix.example.org:443",
		"registration_tokens": "abc,def-1",
		"room_version":        "11",
		"max_upload_bytes":    "1048576",
		"lan_discovery":       "browse",
		"lan_interfaces":      "eth0,wlan0",
	}
	for key, v := range good {
		if err := c.SetConfig(ctx, key, v); err != nil {
			t.Errorf("set %s = %q: %v", key, v, err)
		}
	}
}

// TestConfigWriteKeepsModeAndLeavesNoTemp: the file keeps its mode and
// comments, and the atomic write leaves nothing beside it.
func TestConfigWriteKeepsModeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hearth.conf")
	os.WriteFile(file, []byte(confBefore), 0o640)
	os.Chmod(file, 0o640)
	if err := writeConfigValue(file, "log_level", "debug"); err != nil {
		t.Fatal(err)
	}
	if err := writeConfigValue(file, "registration", "closed"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	if want := "# my settings\nlog_level = debug\n\n# previews\nurl_previews = off\nregistration = closed\n"; string(got) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files left beside hearth.conf: %v", entries)
	}
	fresh := filepath.Join(dir, "new.conf")
	if err := writeConfigValue(fresh, "log_level", "warn"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new config file mode %v, want 0600", fi.Mode())
	}
}

// TestSetConfigKeepsRecordedServerName: the data dir is recorded under the
// server name it started with and refuses to start under another
// (datadir.go), so writing another server_name would only make the next
// start fail. It is refused, naming the key, and the file is unchanged;
// the name the daemon runs under is taken.
func TestSetConfigKeepsRecordedServerName(t *testing.T) {
	c, file := configClient(t)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ce *control.Error
	if err := c.SetConfig(ctx, "server_name", "other.example"); !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "server_name" {
		t.Fatalf("set server_name to another name: %v", err)
	}
	if after, _ := os.ReadFile(file); string(after) != confBefore {
		t.Fatalf("hearth.conf changed:\n%s", after)
	}
	if err := c.SetConfig(ctx, "server_name", st.ServerName); err != nil {
		t.Fatalf("set server_name to its own %q: %v", st.ServerName, err)
	}
}
