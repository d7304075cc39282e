//go:build dist

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The .deb is installed for real into a throwaway Debian root made with
// debootstrap (minbase plus systemd, for systemd-analyze): about a minute
// the first time on this machine's mirror, then cached here and copied
// (a few seconds) for each test, so no test touches the machine's own
// /usr or dpkg database.
const (
	chrootCache = "/var/cache/hearth-test-dist/bookworm-minbase-systemd"
	debianSuite = "bookworm"
)

var chrootCacheOnce struct {
	sync.Once
	err error
}

// debianMirror is the mirror debootstrap fetches from:
// HEARTH_DEBIAN_MIRROR, else deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("HEARTH_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

func makeChrootCache(t *testing.T) error {
	if _, err := os.Stat(filepath.Join(chrootCache, "usr/bin/systemd-analyze")); err == nil {
		return nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("debootstrap is not installed (Debian package debootstrap; make test-dist installs it)")
	}
	tmp := fmt.Sprintf("%s.tmp-%d", chrootCache, os.Getpid())
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(chrootCache), 0o755); err != nil {
		return err
	}
	start := time.Now()
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include=systemd", debianSuite, tmp, debianMirror()).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("debootstrap %s from %s: %v\n%s", debianSuite, debianMirror(), err, lastLines(out, 20))
	}
	logf(t, "debootstrap of the test root (cached in %s): %v", chrootCache, time.Since(start).Round(time.Second))
	if err := os.Rename(tmp, chrootCache); err != nil {
		// Another test run finished its own first: use that one.
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(filepath.Join(chrootCache, "usr/bin/systemd-analyze")); statErr != nil {
			return fmt.Errorf("cache the test root: %w", err)
		}
	}
	return nil
}

// debRoot is a throwaway Debian root with a user anna (uid 1000).
type debRoot struct {
	t    *testing.T
	root string
}

func newDebRoot(t *testing.T) *debRoot {
	t.Helper()
	needRoot(t)
	chrootCacheOnce.Do(func() { chrootCacheOnce.err = makeChrootCache(t) })
	if chrootCacheOnce.err != nil {
		t.Fatal(chrootCacheOnce.err)
	}
	r := &debRoot{t: t, root: filepath.Join(t.TempDir(), "root")}
	// Anything mounted under the root (the read-only test) is unmounted
	// before TempDir's removal, which runs after this cleanup.
	t.Cleanup(func() {
		for _, m := range mountsUnder(r.root) {
			exec.Command("umount", "-l", m).Run()
		}
	})
	if out, err := exec.Command("cp", "-a", chrootCache, r.root).CombinedOutput(); err != nil {
		t.Fatalf("copy the cached root: %v\n%s", err, out)
	}
	// anna's processes run in the root and some of the test's run outside
	// it as anna (the session bus): they must reach it.
	os.Chmod(filepath.Dir(r.root), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(r.root)), 0o755)
	// A real system has /proc: hearth finds its own binary there (the
	// tray's Start Hearth).
	if out, err := exec.Command("mount", "-t", "proc", "proc", filepath.Join(r.root, "proc")).CombinedOutput(); err != nil {
		t.Fatalf("mount /proc in the root: %v\n%s", err, out)
	}
	r.run(0, nil, "/usr/sbin/useradd", "-m", "-u", "1000", "-s", "/bin/sh", "anna")
	return r
}

// cmd is a command inside the root, as uid (0 for root; anna is 1000).
func (r *debRoot) cmd(uid int, env []string, path string, args ...string) *exec.Cmd {
	c := exec.Command(path, args...)
	c.Dir = "/"
	home := "/root"
	user := "root"
	if uid != 0 {
		home, user = "/home/anna", "anna"
	}
	c.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "USER=" + user, "LOGNAME=" + user, "LANG=C", "DEBIAN_FRONTEND=noninteractive"}, env...)
	c.SysProcAttr = &syscall.SysProcAttr{Chroot: r.root, Setpgid: true}
	if uid != 0 {
		c.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	return c
}

// run runs a command inside the root and fails the test if it fails.
func (r *debRoot) run(uid int, env []string, path string, args ...string) string {
	r.t.Helper()
	out, err := r.cmd(uid, env, path, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start starts a long-running command inside the root; the test's end
// kills it if it is still running.
func (r *debRoot) start(uid int, env []string, path string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	r.t.Helper()
	c := r.cmd(uid, env, path, args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		r.t.Fatalf("start %s: %v", path, err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	r.t.Cleanup(func() {
		c.Process.Kill()
		<-done
	})
	return c, &out
}

// path is p inside the root, as seen from the test.
func (r *debRoot) path(p string) string { return filepath.Join(r.root, p) }

// copyIn copies a host file into the root.
func (r *debRoot) copyIn(src, dst string) {
	r.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.path(dst), b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// files lists every path in the root but the kernel and scratch file
// systems, with its type, for before/after comparisons.
func (r *debRoot) files() map[string]string {
	r.t.Helper()
	out := map[string]string{}
	err := filepath.Walk(r.root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, r.root)
		switch rel {
		case "/proc", "/sys", "/dev", "/tmp", "/run":
			return filepath.SkipDir
		}
		out[rel] = fi.Mode().Type().String()
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// hearthDaemon is `hearth run` inside the root as anna.
type hearthDaemon struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	addr string
}

const annaData = "/home/anna/.local/share/hearth"

func (r *debRoot) startHearth() *hearthDaemon { return r.startHearthAt(annaData) }

func (r *debRoot) startHearthAt(dataDir string) *hearthDaemon {
	r.t.Helper()
	addr := freeAddr(r.t)
	args := []string{"run", "--data-dir", dataDir, "--federation", "off", "--lan-discovery", "off",
		"--key-store", "file", "--client-listen", addr}
	c, out := r.start(1000, nil, "/usr/bin/hearth", args...)
	return &hearthDaemon{cmd: c, out: out, addr: addr}
}

// waitVersions waits until the daemon answers /versions (or fails the
// test at the deadline, printing its output).
func (d *hearthDaemon) waitVersions(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + d.addr + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if d.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("no /versions from hearth at %s: %v\n%s", d.addr, err, d.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the daemon with SIGTERM and waits for a clean exit.
func (d *hearthDaemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for d.alive() {
		if time.Now().After(deadline) {
			t.Fatalf("hearth did not stop on SIGTERM:\n%s", d.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *hearthDaemon) alive() bool { return processAlive(d.cmd) }

// processAlive: the process has not exited (a zombie counts as exited).
func processAlive(c *exec.Cmd) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// mountsUnder lists mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 1 && strings.HasPrefix(fs[1], dir+"/") {
			ms = append(ms, fs[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logf prints a measurement both to the test log and to standard output,
// where `make test-dist` shows it.
func logf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf(format, args...)
	fmt.Printf("dist: "+format+"\n", args...)
}
