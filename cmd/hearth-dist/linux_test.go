//go:build dist

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The Linux builds of the dist tests: one release, the same release built
// again (reproducibility), and a later one to upgrade to.
const (
	linuxVersion   = "0.1.0"
	upgradeVersion = "0.1.1"
)

var linuxPlatforms = []string{"linux/amd64", "linux/arm64"}

func linuxBuild(t *testing.T) (*Build, []Artifact) {
	return distBuild(t, "linux", linuxVersion, linuxPlatforms...)
}

// linuxInstalled is every file a package installs.
var linuxInstalled = func() []string {
	fs := []string{"/etc/xdg/autostart/hearth-tray.desktop", "/usr/bin/hearth",
		"/usr/lib/systemd/user/hearth.service", "/usr/share/applications/hearth.desktop"}
	for _, s := range []int{16, 24, 32, 48, 64, 128, 256, 512} {
		fs = append(fs, fmt.Sprintf("/usr/share/icons/hicolor/%dx%d/apps/hearth.png", s, s))
	}
	sort.Strings(fs)
	return fs
}()

// TestLinuxReproducible: two builds of one commit give byte-identical
// .deb, .rpm and .tar.gz files.
func TestLinuxReproducible(t *testing.T) {
	_, a := linuxBuild(t)
	_, b := distBuild(t, "linux-again", linuxVersion, linuxPlatforms...)
	if len(a) != 6 || len(b) != len(a) {
		t.Fatalf("artifacts: %d and %d, want 6 (deb, rpm, tar.gz for two arches)", len(a), len(b))
	}
	for i := range a {
		if filepath.Base(a[i].Path) != filepath.Base(b[i].Path) {
			t.Fatalf("artifact %d: %s vs %s", i, a[i].Path, b[i].Path)
		}
		out, err := exec.Command("cmp", a[i].Path, b[i].Path).CombinedOutput()
		if err != nil {
			t.Errorf("%s differs between two builds of one commit: %v %s", filepath.Base(a[i].Path), err, out)
		}
	}
}

// TestLinuxBinarySize: the Linux binaries stay within the 40 MB size
// budget (issue 13).
func TestLinuxBinarySize(t *testing.T) {
	bld, _ := linuxBuild(t)
	for _, p := range linuxPlatforms {
		st, err := os.Stat(bld.Binaries[p])
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 40<<20 {
			t.Errorf("%s binary is %d bytes, over the 40 MB budget", p, st.Size())
		}
	}
}

// TestRPM checks the .rpm with rpm's own query tools: its files, its
// scripts, its version and that its build time is the commit's.
func TestRPM(t *testing.T) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Fatal("rpm is not installed (Debian package rpm; make test-dist installs it)")
	}
	b, arts := linuxBuild(t)
	for arch, rpmArch := range map[string]string{"amd64": "x86_64", "arm64": "aarch64"} {
		path := artifact(t, arts, "."+rpmArch+".rpm")
		out, err := exec.Command("rpm", "-qp", "--list", path).Output()
		if err != nil {
			t.Fatalf("rpm -qp --list %s: %v", path, err)
		}
		if got := strings.Fields(string(out)); strings.Join(got, "\n") != strings.Join(linuxInstalled, "\n") {
			t.Errorf("%s files:\n%s\nwant:\n%s", arch, out, strings.Join(linuxInstalled, "\n"))
		}
		out, err = exec.Command("rpm", "-qp", "--scripts", path).Output()
		if err != nil {
			t.Fatalf("rpm -qp --scripts: %v", err)
		}
		for _, want := range []string{"postinstall scriptlet", "systemctl --user", "runuser", "postuninstall scriptlet", "purge | 0"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s scripts lack %q:\n%s", arch, want, out)
			}
		}
		if strings.Contains(string(out), "preinstall") || strings.Contains(string(out), "preuninstall") {
			t.Errorf("%s has scripts beyond post-install and post-uninstall:\n%s", arch, out)
		}
		out, err = exec.Command("rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH} %{BUILDTIME} %{BUILDHOST}", path).Output()
		want := fmt.Sprintf("hearth %s-1 %s %d hearth-dist", linuxVersion, rpmArch, b.Date.Unix())
		if err != nil || string(out) != want {
			t.Errorf("rpm -qp --qf: %q (%v), want %q", out, err, want)
		}
	}
}

// TestTarball: the .tar.gz holds the binary and the desktop files in a
// prefix layout, every entry owned by root and dated at the commit.
func TestTarball(t *testing.T) {
	b, arts := linuxBuild(t)
	path := artifact(t, arts, "-linux-amd64.tar.gz")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	top := "hearth-" + linuxVersion + "-linux-amd64/"
	got := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(b.Date) || h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || !strings.HasPrefix(h.Name, top) {
			t.Errorf("%s: mtime %v uid %d gid %d %s", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		got[strings.TrimPrefix(h.Name, top)] = true
		if h.Name == top+"bin/hearth" {
			body, _ := io.ReadAll(tr)
			bin, _ := os.ReadFile(b.Binaries["linux/amd64"])
			if h.Mode != 0o755 || !bytes.Equal(body, bin) {
				t.Errorf("bin/hearth: mode %o, same bytes as the build: %v", h.Mode, bytes.Equal(body, bin))
			}
		}
	}
	for _, want := range []string{"bin/hearth", "share/applications/hearth.desktop", "etc/xdg/autostart/hearth-tray.desktop", "share/icons/hicolor/48x48/apps/hearth.png"} {
		if !got[want] {
			t.Errorf("no %s in the tarball", want)
		}
	}
}

// TestDebLifecycle installs the .deb for real into a Debian root, as a
// person would on their machine with a session open:
//   - install: nothing starts (the stand-in systemctl sees no call), the
//     installed `hearth version` is the build's, the unit passes
//     `systemd-analyze verify`, the desktop entries pass
//     desktop-file-validate, and `hearth run` answers /versions (the
//     time from dpkg -i to that answer is printed);
//   - upgrade over the running daemon (dpkg -i of a later build while
//     `hearth run` of /usr/bin/hearth runs): the new binary is in place,
//     the running one keeps answering until it is stopped, the
//     post-install script asks anna's own systemd --user (as anna) to
//     restart hearth.service, and the data dir, its signing key and its
//     accounts are the same for the new binary;
//   - remove while the tray runs: the tray keeps running, the package's
//     files are gone, anna's data is not;
//   - purge: says where anna's data is, and the root holds exactly the
//     files it held before the install, plus anna's data.
//
// anna's systemd --user manager is a stand-in here (/usr/local/bin/
// systemctl records its calls and says the unit is active): this machine
// runs no systemd, so the restart itself is not run, only asked for.
func TestDebLifecycle(t *testing.T) {
	b, arts := linuxBuild(t)
	_, up := distBuild(t, "linux-upgrade", upgradeVersion, "linux/amd64")
	r := newDebRoot(t)

	// anna's session: a real D-Bus session bus at /run/user/1000/bus (the
	// tray's, and what tells the post-install script anna is logged in)
	// and the stand-in systemctl.
	if err := os.MkdirAll(r.path("/run/user/1000"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(r.path("/run/user/1000"), 1000, 1000)
	bus := r.path("/run/user/1000/bus")
	dbusd := exec.Command("dbus-daemon", "--session", "--nofork", "--address=unix:path="+bus)
	dbusd.SysProcAttr = r.cmd(1000, nil, "/").SysProcAttr
	dbusd.SysProcAttr.Chroot = ""
	if err := dbusd.Start(); err != nil {
		t.Fatalf("dbus-daemon (Debian package dbus): %v", err)
	}
	t.Cleanup(func() { dbusd.Process.Kill(); dbusd.Wait() })
	if err := os.WriteFile(r.path("/usr/local/bin/systemctl"), []byte("#!/bin/sh\necho \"$(id -un) $*\" >> /tmp/systemctl.log\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := r.files()

	// Install.
	r.copyIn(artifact(t, arts, "_amd64.deb"), "/tmp/a.deb")
	r.copyIn(artifact(t, up, "_amd64.deb"), "/tmp/b.deb")
	start := time.Now()
	r.run(0, nil, "/usr/bin/dpkg", "-i", "/tmp/a.deb")
	d := r.startHearth()
	d.waitVersions(t)
	logf(t, "install-to-first-/versions (.deb, dpkg -i then hearth run): %v", time.Since(start).Round(time.Millisecond))
	if calls, _ := os.ReadFile(r.path("/tmp/systemctl.log")); len(calls) > 0 {
		t.Errorf("a fresh install called systemctl:\n%s", calls)
	}
	wantVersion := fmt.Sprintf("hearth %s\ncommit %s\nbuilt %s\n", linuxVersion, b.Commit, b.Date.Format(time.RFC3339))
	if v := r.run(1000, nil, "/usr/bin/hearth", "version"); !strings.HasPrefix(v, wantVersion) {
		t.Errorf("hearth version:\n%s\nwant:\n%s", v, wantVersion)
	}
	listed := strings.Fields(r.run(0, nil, "/usr/bin/dpkg", "-L", "hearth"))
	for _, f := range linuxInstalled {
		if !contains(listed, f) {
			t.Errorf("dpkg -L hearth lacks %s", f)
		}
	}
	os.MkdirAll(r.path("/run/user/0"), 0o700) // systemd-analyze --user wants a runtime dir
	if out := r.run(0, []string{"XDG_RUNTIME_DIR=/run/user/0"}, "/usr/bin/systemd-analyze", "verify", "--user", "/usr/lib/systemd/user/hearth.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	unit, _ := os.ReadFile(r.path("/usr/lib/systemd/user/hearth.service"))
	if !strings.Contains(string(unit), `ExecStart="/usr/bin/hearth" "run"`) {
		t.Errorf("the unit does not run /usr/bin/hearth:\n%s", unit)
	}
	if out, err := exec.Command("desktop-file-validate", r.path("/usr/share/applications/hearth.desktop"), r.path("/etc/xdg/autostart/hearth-tray.desktop")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("desktop-file-validate: %v\n%s", err, out)
	}
	entry, _ := os.ReadFile(r.path("/usr/share/applications/hearth.desktop"))
	for _, want := range []string{"Name=Hearth\n", "Exec=hearth tray --start-daemon\n", "Icon=hearth\n", "Categories=Network;Chat;InstantMessaging;\n"} {
		if !strings.Contains(string(entry), want) {
			t.Errorf("hearth.desktop lacks %q", want)
		}
	}

	// The tray, in anna's session.
	tray, trayOut := r.start(1000, []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus", "XDG_RUNTIME_DIR=/run/user/1000"},
		"/usr/bin/hearth", "tray", "--data-dir", annaData, "--client-listen", d.addr, "--key-store", "file")
	trayName := waitTrayName(t, r, trayOut)

	// Upgrade over the running daemon.
	accounts := r.run(1000, nil, "/usr/bin/hearth", "account", "list", "--data-dir", annaData, "--client-listen", d.addr)
	out := r.run(0, nil, "/usr/bin/dpkg", "-i", "/tmp/b.deb")
	if v := r.run(1000, nil, "/usr/bin/hearth", "version"); !strings.HasPrefix(v, "hearth "+upgradeVersion+"\n") {
		t.Errorf("after the upgrade, hearth version:\n%s", v)
	}
	if !d.alive() {
		t.Fatalf("the running daemon died during the upgrade:\n%s", d.out)
	}
	d.waitVersions(t) // the old process still serves
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.cmd.Process.Pid)); !strings.HasSuffix(exe, " (deleted)") {
		t.Errorf("the running daemon's binary %q: want the replaced (deleted) file", exe)
	}
	calls, _ := os.ReadFile(r.path("/tmp/systemctl.log"))
	wantCalls := "anna --user is-active --quiet hearth.service\nanna --user daemon-reload\nanna --user restart hearth.service\n"
	if string(calls) != wantCalls || !strings.Contains(out, "restarted anna's Hearth") {
		t.Errorf("the upgrade's calls to anna's systemd --user:\n%s\nwant:\n%s\ndpkg said:\n%s", calls, wantCalls, out)
	}
	key, _ := os.ReadFile(r.path(annaData + "/signing.key"))
	d.stop(t)
	d = r.startHearth()
	d.waitVersions(t)
	if got := r.run(1000, nil, "/usr/bin/hearth", "account", "list", "--data-dir", annaData, "--client-listen", d.addr); got != accounts || accounts == "" {
		t.Errorf("accounts after the upgrade:\n%s\nbefore:\n%s", got, accounts)
	}
	if key2, _ := os.ReadFile(r.path(annaData + "/signing.key")); len(key) == 0 || !bytes.Equal(key, key2) {
		t.Error("the signing key changed across the upgrade")
	}
	d.stop(t)
	data := dirHash(t, r.path(annaData))

	// Remove while the tray runs, then purge.
	r.run(0, nil, "/usr/bin/dpkg", "-r", "hearth")
	for _, f := range linuxInstalled {
		if _, err := os.Lstat(r.path(f)); err == nil {
			t.Errorf("%s is still there after dpkg -r", f)
		}
	}
	if !processAlive(tray) || !trayOnBus(t, r, trayName) {
		t.Errorf("the tray stopped when the package was removed:\n%s", trayOut)
	}
	out = r.run(0, nil, "/usr/bin/dpkg", "-P", "hearth")
	if !strings.Contains(out, "anna: "+annaData) {
		t.Errorf("purge does not say where anna's data is:\n%s", out)
	}
	if dirHash(t, r.path(annaData)) != data {
		t.Error("remove or purge changed anna's data dir")
	}
	after := r.files()
	for p, typ := range after {
		if _, ok := before[p]; !ok && !strings.HasPrefix(p, "/home/anna/.local") && !dpkgBookkeeping(p) {
			t.Errorf("left after purge: %s (%s)", p, typ)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("gone after purge: %s", p)
		}
	}
}

// dpkgBookkeeping: files dpkg itself keeps about past operations.
func dpkgBookkeeping(p string) bool {
	switch p {
	case "/var/lib/dpkg/status-old", "/var/lib/dpkg/diversions-old", "/var/log/dpkg.log", "/var/log/alternatives.log":
		return true
	}
	return false
}

// waitTrayName waits for the tray's StatusNotifierItem on anna's bus.
func waitTrayName(t *testing.T, r *debRoot, trayOut *bytes.Buffer) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := trayNames(t, r); len(n) > 0 {
			return n[0]
		}
		if time.Now().After(deadline) {
			_, err := trayNamesErr(r)
			t.Fatalf("the tray never showed on anna's D-Bus session (%v); the tray said:\n%s", err, trayOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func trayOnBus(t *testing.T, r *debRoot, name string) bool { return contains(trayNames(t, r), name) }

// trayNames lists the StatusNotifierItem names on anna's bus, asked as
// anna (a session bus admits only its own user).
func trayNames(t *testing.T, r *debRoot) []string {
	n, _ := trayNamesErr(r)
	return n
}

func trayNamesErr(r *debRoot) ([]string, error) {
	c := exec.Command("dbus-send", "--bus=unix:path="+r.path("/run/user/1000/bus"), "--print-reply", "--dest=org.freedesktop.DBus",
		"/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames")
	c.SysProcAttr = r.cmd(1000, nil, "/").SysProcAttr
	c.SysProcAttr.Chroot = ""
	out, err := c.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dbus-send: %v: %s", err, out)
	}
	var names []string
	for _, f := range strings.Fields(string(out)) {
		if n := strings.Trim(f, `"`); strings.HasPrefix(n, "org.kde.StatusNotifierItem-") {
			names = append(names, n)
		}
	}
	return names, nil
}

// dirHash is a digest of every file's path and contents under dir.
func dirHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", strings.TrimPrefix(p, dir), fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDebReadOnlyDataDir: the installed hearth, first run on a read-only
// disk, and again on a data dir whose disk went read-only: a clear
// message, exit code 5, and the data dir unchanged. Then a first run on a
// full disk: the same, and once space is freed the next start works
// (it used to find the partial hearth.db the failed start had left and
// refuse it as damaged).
func TestDebReadOnlyDataDir(t *testing.T) {
	_, arts := linuxBuild(t)
	r := newDebRoot(t)
	r.copyIn(artifact(t, arts, "_amd64.deb"), "/tmp/a.deb")
	r.run(0, nil, "/usr/bin/dpkg", "-i", "/tmp/a.deb")
	disk := r.path("/mnt/disk")
	os.MkdirAll(disk, 0o755)
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v\n%s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "-o", "size=64m,mode=0777", "tmpfs", disk)
	runOn := func(dataDir string) (int, string) {
		c := r.cmd(1000, nil, "/usr/bin/hearth", "run", "--data-dir", dataDir, "--federation", "off", "--lan-discovery", "off",
			"--key-store", "file", "--client-listen", freeAddr(t))
		out, err := c.CombinedOutput()
		if err != nil && c.ProcessState == nil {
			t.Fatal(err)
		}
		return c.ProcessState.ExitCode(), string(out)
	}
	mount("-o", "remount,ro", disk)
	if code, out := runOn("/mnt/disk/hearth"); code != 5 || !strings.Contains(out, "the data dir /mnt/disk/hearth is on a read-only disk") {
		t.Errorf("first run on a read-only disk: exit %d\n%s", code, out)
	}

	// A data dir made on a writable disk, which then goes read-only.
	mount("-o", "remount,rw", disk)
	os.MkdirAll(r.path("/mnt/disk/anna"), 0o700)
	os.Chown(r.path("/mnt/disk/anna"), 1000, 1000)
	d := r.startHearthAt("/mnt/disk/anna/hearth")
	d.waitVersions(t)
	d.stop(t)
	sum := dirHash(t, r.path("/mnt/disk/anna/hearth"))
	mount("-o", "remount,ro", disk)
	if code, out := runOn("/mnt/disk/anna/hearth"); code != 5 || !strings.Contains(out, "is on a read-only disk") {
		t.Errorf("a data dir on a disk gone read-only: exit %d\n%s", code, out)
	}
	if dirHash(t, r.path("/mnt/disk/anna/hearth")) != sum {
		t.Error("the refused start changed the data dir")
	}

	// A full disk: 8 KiB holds the signing key, not hearth.db's first
	// pages.
	full := r.path("/mnt/full")
	os.MkdirAll(full, 0o755)
	mount("-t", "tmpfs", "-o", "size=8k,mode=0777", "tmpfs", full)
	if code, out := runOn("/mnt/full/hearth"); code != 5 || !strings.Contains(out, "the disk holding the data dir /mnt/full/hearth is full") {
		t.Errorf("first run on a full disk: exit %d\n%s", code, out)
	}
	mount("-o", "remount,size=64m", full)
	d = r.startHearthAt("/mnt/full/hearth")
	d.waitVersions(t)
	d.stop(t)
}

// TestRPMInstall installs the .rpm for real with rpm --root into a
// Debian root (rpm runs the scriptlets chrooted there; --nodeps because
// that root's rpm database knows no packages): a fresh install asks
// nothing of anyone's systemd, an upgrade (%post with 2) asks anna's to
// restart hearth.service, and an erase (%postun with 0) removes the files,
// keeps anna's data and says where it is. rpm runs scriptlets with its own
// PATH, so the stand-in replaces /usr/bin/systemctl in this copy.
func TestRPMInstall(t *testing.T) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Fatal("rpm is not installed (Debian package rpm; make test-dist installs it)")
	}
	_, arts := linuxBuild(t)
	_, up := distBuild(t, "linux-upgrade", upgradeVersion, "linux/amd64")
	r := newDebRoot(t)
	if err := os.WriteFile(r.path("/usr/bin/systemctl"), []byte("#!/bin/sh\necho \"$(id -un) $*\" >> /tmp/systemctl.log\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// anna is logged in: her runtime dir holds her session bus's socket.
	os.MkdirAll(r.path("/run/user/1000"), 0o700)
	os.Chown(r.path("/run/user/1000"), 1000, 1000)
	l, err := net.Listen("unix", r.path("/run/user/1000/bus"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	data := r.path(annaData)
	os.MkdirAll(data, 0o700)
	os.WriteFile(filepath.Join(data, "hearth.db"), []byte("anna's"), 0o600)
	// The shared directories exist, as on an rpm system, where other
	// packages own them (filesystem, hicolor-icon-theme, xdg-utils): the
	// .rpm owns only its files, so rpm -e leaves those directories as they
	// were. (dpkg removes the empty directories it made; the .deb test's
	// root starts without them.)
	for _, f := range linuxInstalled {
		os.MkdirAll(filepath.Dir(r.path(f)), 0o755)
	}
	before := r.files()
	rpm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("rpm", append([]string{"--root", r.root, "--nodeps"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	rpm("-i", artifact(t, arts, ".x86_64.rpm"))
	for _, f := range linuxInstalled {
		if _, err := os.Stat(r.path(f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if calls, _ := os.ReadFile(r.path("/tmp/systemctl.log")); len(calls) > 0 {
		t.Errorf("a fresh install called systemctl:\n%s", calls)
	}
	rpm("-U", artifact(t, up, ".x86_64.rpm"))
	calls, _ := os.ReadFile(r.path("/tmp/systemctl.log"))
	if want := "anna --user is-active --quiet hearth.service\nanna --user daemon-reload\nanna --user restart hearth.service\n"; string(calls) != want {
		t.Errorf("the upgrade's calls:\n%s\nwant:\n%s", calls, want)
	}
	out := rpm("-e", "hearth")
	if !strings.Contains(out, "anna: "+annaData) {
		t.Errorf("rpm -e does not say where anna's data is:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "hearth.db")); string(b) != "anna's" {
		t.Error("rpm -e touched anna's data")
	}
	after := r.files()
	for p, typ := range after {
		// rpm's own database is not Hearth's to remove.
		if _, ok := before[p]; !ok && !strings.HasPrefix(p, "/root/.rpmdb") && !strings.HasPrefix(p, "/var/lib/rpm") {
			t.Errorf("left after rpm -e: %s (%s)", p, typ)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("gone after rpm -e: %s", p)
		}
	}
}
