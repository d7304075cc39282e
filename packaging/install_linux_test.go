package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit installs the user unit into a scratch config dir and has
// systemd itself check it: any warning systemd-analyze prints about the
// unit fails the test.
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed (Debian package systemd)")
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	in := Installer{DataDir: filepath.Join(t.TempDir(), "data dir with spaces and 100%")}
	path, err := in.Do(Install, false)
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), `"run" "--data-dir" "`+strings.ReplaceAll(in.DataDir, "%", "%%")+`"`) {
		t.Fatalf("ExecStart does not run this data dir:\n%s", unit)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, unit)
	}
	if _, err := in.Do(Uninstall, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("unit still there after uninstall: %v", err)
	}
}
