package daemon

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, args []string, file string, env map[string]string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, file, func(k string) string { return env[k] })
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "h.conf")
	os.WriteFile(file, []byte("# comment\nserver_name = fromfile\nregistration = open\nmax_request_bytes = 200000\nroom_version = 9\n"), 0o600)
	env := map[string]string{"HEARTH_REGISTRATION": "closed", "HEARTH_ROOM_VERSION": "11"}
	c, err := load(t, []string{"--room-version", "12", "--data-dir", dir}, file, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "fromfile" || c.Registration != "closed" || c.RoomVersion != "12" ||
		c.MaxRequestBytes != 200000 || c.DataDir != dir || c.ClientListen != "127.0.0.1:8008" {
		t.Fatalf("precedence wrong: %+v", c)
	}
}

func TestDefaultFileInDataDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hearth.conf"), []byte("server_name = indir\n"), 0o600)
	c, err := load(t, nil, "", map[string]string{"HEARTH_DATA_DIR": dir})
	if err != nil || c.ServerName != "indir" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string
	}{
		{"registration", "", []string{"--registration", "sometimes"}, "registration"},
		{"token without tokens", "", []string{"--registration", "token"}, "registration_tokens"},
		{"unknown key", "colour = blue\n", nil, "unknown key"},
		{"not key=value", "just words\n", nil, "key = value"},
		{"number", "max_request_bytes = lots\n", nil, "whole number"},
		{"missing file", "-", nil, "no such file"},
		{"control character", "", []string{"--chat-client-url", "https://chat.example/\nregistration = open"}, "chat_client_url: control characters"},
		{"listen address", "", []string{"--client-listen", "localhost"}, "client_listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file == "-" {
				file = filepath.Join(dir, "absent.conf")
			} else if tc.file != "" {
				os.WriteFile(bad, []byte(tc.file), 0o600)
				file = bad
			}
			_, err := load(t, append(tc.args, "--data-dir", dir), file, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// The printed defaults are themselves a valid config file.
func TestDefaultsRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	WriteDefaults(bufio.NewWriter(&buf))
	file := filepath.Join(t.TempDir(), "d.conf")
	os.WriteFile(file, buf.Bytes(), 0o600)
	c, err := load(t, nil, file, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.File = file
	if c != want {
		t.Fatalf("defaults file reads back as %+v", c)
	}
}

// A machine name that is not a valid server name still gives a fresh
// install one that passes the config checks.
func TestMachineServerName(t *testing.T) {
	for host, want := range map[string]string{
		"laptop": "laptop", "Johns-MacBook-Pro.local": "johns-macbook-pro", "my_box": "my-box",
		"DESKTOP-ÄB1": "desktop--b1", "": "localhost", "_": "localhost",
	} {
		got := machineServerName(host)
		if got != want {
			t.Errorf("machineServerName(%q) = %q, want %q", host, got, want)
		}
		if err := checkServerName(got); err != nil {
			t.Errorf("machineServerName(%q) = %q fails the server-name check: %v", host, got, err)
		}
	}
}
