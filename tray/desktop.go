package tray

import (
	"errors"
	"fmt"
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

// StartDaemon runs Args as a new process that outlives the tray; the
// channel says when and how it ended.
func (d SystemDesktop) StartDaemon() (<-chan error, error) {
	if len(d.Args) == 0 {
		return nil, errors.New("no command to start Hearth with")
	}
	cmd := exec.Command(d.Args[0], d.Args[1:]...)
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- daemonExit(cmd.Wait()) }()
	return exited, nil
}

// exitRunning is hearth's exit code for "Hearth is running" (cmd/hearth):
// another daemon (the service manager's, another tray's) got there first,
// which is what the tray wanted.
const exitRunning = 3

// daemonExit is what a daemon's exit means to the tray: nil when it ended
// cleanly or found Hearth already running.
func daemonExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitRunning {
		return nil
	}
	return err
}

// OpenFile opens path with the desktop's default application.
func (SystemDesktop) OpenFile(path string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", path)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", path)
	default:
		cmd = exec.Command("xdg-open", path)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	go cmd.Wait()
	return nil
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
