package tray

import (
	"errors"
	"os/exec"
	"runtime"
	"strings"

	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// SystemDesktop opens links and copies text with the tools each desktop
// provides, and starts the daemon by running Args detached.
type SystemDesktop struct {
	// Args is the daemon's command line: this binary, "run" and the flags
	// the tray was given, so it starts the same Hearth.
	Args []string
}

// StartDaemon runs Args as a new process that outlives the tray.
func (d SystemDesktop) StartDaemon() error {
	if len(d.Args) == 0 {
		return errors.New("no command to start Hearth with")
	}
	cmd := exec.Command(d.Args[0], d.Args[1:]...)
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// OpenURL opens url in the default browser. The links the tray opens
// carry one-time secrets, so it goes through a private launch page rather
// than the browser's command line (controlclient.OpenInBrowser).
func (SystemDesktop) OpenURL(url string) error { return controlclient.OpenInBrowser(url) }

// CopyText puts text on the clipboard: pbcopy on macOS, clip on Windows,
// and on Linux wl-copy (Wayland) or xclip (X11), whichever is there.
func (SystemDesktop) CopyText(text string) error {
	var candidates [][]string
	switch runtime.GOOS {
	case "darwin":
		candidates = [][]string{{"pbcopy"}}
	case "windows":
		candidates = [][]string{{"clip"}}
	default:
		candidates = [][]string{{"wl-copy"}, {"xclip", "-selection", "clipboard"}, {"xsel", "--clipboard", "--input"}}
	}
	for _, c := range candidates {
		if _, err := exec.LookPath(c[0]); err != nil {
			continue
		}
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Stdin = strings.NewReader(text)
		return cmd.Run()
	}
	return errors.New("no clipboard tool found (wl-copy, xclip or xsel)")
}
