// Package packaging holds the files that install Hearth as a per-user
// service — a systemd user unit on Linux, a LaunchAgent on macOS — and
// renders them for one binary and data dir, and installs them ('hearth
// service': install.go and its per-OS files), asking the OS's service
// manager to load, start or stop them. The Windows autostart entry is a
// registry value and needs no template. It takes what it needs of the
// configuration as plain values (Installer), so it imports no daemon.
package packaging

import (
	"bytes"
	"embed"
	"fmt"
	"html"
	"strings"
	"text/template"
)

//go:embed systemd/hearth.service launchd/org.hearth.plist
var files embed.FS

// Service describes what the service runs.
type Service struct {
	Args []string // the binary and its arguments: [/path/hearth run --data-dir …]
	// LogFile, if set, is passed as --log-file: the daemon writes its log
	// there and rotates it, since neither launchd nor a Windows Run key
	// rotates anything (systemd's journal does, so the unit leaves it
	// empty).
	LogFile string
	// Stderr is where launchd writes standard error: with LogFile set,
	// only what the daemon cannot log itself (a crash trace, the reason it
	// refused to start), so it stays small.
	Stderr string
}

// Command is the command line the service runs.
func (s Service) Command() []string {
	args := append([]string(nil), s.Args...)
	if s.LogFile != "" {
		args = append(args, "--log-file", s.LogFile)
	}
	return args
}

// SystemdUnit renders the systemd user unit.
func SystemdUnit(s Service) ([]byte, error) {
	cmd := s.Command()
	quoted := make([]string, len(cmd))
	for i, a := range cmd {
		quoted[i] = systemdQuote(a)
	}
	return render("systemd/hearth.service", map[string]any{"Exec": strings.Join(quoted, " ")})
}

// LaunchAgent renders the macOS LaunchAgent property list.
func LaunchAgent(s Service) ([]byte, error) {
	cmd := s.Command()
	args := make([]string, len(cmd))
	for i, a := range cmd {
		args[i] = html.EscapeString(a)
	}
	return render("launchd/org.hearth.plist", map[string]any{"Args": args, "Stderr": html.EscapeString(s.Stderr)})
}

func render(name string, data any) ([]byte, error) {
	t, err := template.ParseFS(files, name)
	if err != nil {
		return nil, fmt.Errorf("packaging: %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("packaging: %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// systemdQuote quotes one ExecStart word (systemd.syntax(7)): double
// quotes, with backslash, quote and the specifier character escaped.
func systemdQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`, "$", "$$")
	return `"` + r.Replace(s) + `"`
}
