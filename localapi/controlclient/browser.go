package controlclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Opening a browser means running a program (xdg-open, open, rundll32),
// and a program's arguments are readable by every user of the machine in
// the process table: a console link or a chat link with a login token
// there is a credential anyone can redeem first. So OpenInBrowser writes
// the link into a small HTML page that redirects to it, mode 0600 in a
// 0700 directory of the user's, and hands the browser only that file's
// name (as Jupyter does). The secret never appears in argv, in the child's
// environment or in a log.

// launchLife is how long a launch page is kept: the links it holds are
// single-use and expire within two minutes anyway.
const launchLife = 2 * time.Minute

// OpenInBrowser opens link (http or https) in the default browser through
// a private launch page.
func OpenInBrowser(link string) error {
	if u, err := url.Parse(link); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("refusing to open a link that is not http(s)")
	}
	page, err := writeLaunchPage(link)
	if err != nil {
		return err
	}
	// The file stays until launchLife has passed: removed here when this
	// process lives that long (the tray), else by the next launch's sweep.
	time.AfterFunc(launchLife, func() { os.Remove(page) })
	cmd := browserCommand(page)
	if err := cmd.Start(); err != nil {
		os.Remove(page)
		return fmt.Errorf("open a browser: %w", err)
	}
	go cmd.Wait()
	return nil
}

// browserCommand is the desktop's "open this file" command.
func browserCommand(page string) *exec.Cmd {
	switch runtime.GOOS {
	case "darwin":
		return exec.Command("open", page)
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", page)
	}
	return exec.Command("xdg-open", (&url.URL{Scheme: "file", Path: page}).String())
}

// launchDir is the private directory for launch pages: the user's runtime
// dir where there is one (per-user, 0700, cleared at logout), else the
// user's cache dir. It is made 0700 and must not be a symlink.
func launchDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" || runtime.GOOS != "linux" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("no directory for the browser launch page: %w", err)
		}
	}
	dir := filepath.Join(base, "hearth", "open")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("browser launch dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("browser launch dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("browser launch dir %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("browser launch dir: %w", err)
		}
	}
	return dir, nil
}

// writeLaunchPage writes the redirect page for link and returns its path,
// first removing pages older than launchLife.
func writeLaunchPage(link string) (string, error) {
	dir, err := launchDir()
	if err != nil {
		return "", err
	}
	if old, _ := os.ReadDir(dir); old != nil {
		for _, e := range old {
			if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "open-") && time.Since(info.ModTime()) > launchLife {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	f, err := os.CreateTemp(dir, "open-*.html") // 0600, a fresh name
	if err != nil {
		return "", fmt.Errorf("browser launch page: %w", err)
	}
	js, _ := json.Marshal(link) // escapes <, > and &: safe inside <script>
	attr := html.EscapeString(link)
	_, err = fmt.Fprintf(f, `<!doctype html>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url=%s">
<title>Opening Hearth</title>
<script>location.replace(%s)</script>
<p><a href="%s">Continue to Hearth</a></p>
`, attr, js, attr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600) // CreateTemp's mode, stated
	}
	if err != nil {
		os.Remove(f.Name())
		return "", errors.Join(errors.New("browser launch page"), err)
	}
	return f.Name(), nil
}
