// Package e2e holds integration tests that run the real hearth binary as a
// child process and talk to it with a real Matrix client library
// (maunium.net/go/mautrix). TestMain builds the binary once; every test
// starts its own daemon on a fresh data dir and a free loopback port.
//
// Waits in these tests poll or long-poll with a deadline only so that a bug
// fails the test instead of hanging it; no assertion depends on timing
// except the long-poll wake-up, which uses a bound far above any real
// latency.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// serverName is the --server-name every test daemon runs with.
const serverName = "e2e.local"

// hearthBin is the binary TestMain built.
var hearthBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hearth-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	hearthBin = filepath.Join(dir, "hearth")
	// goolm, as Hearth's builds: the call agent's devices are E2EE ones.
	args := []string{"build", "-tags", "goolm", "-o", hearthBin}
	if raceEnabled {
		args = append(args, "-race") // the daemon's races are what this package is for
	}
	args = append(args, "github.com/hearth-chat/hearth/cmd/hearth")
	build := exec.Command(goTool(), args...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building hearth failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// goTool finds the go command that runs these tests.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Deadlines. They bound waits so that a bug fails instead of hanging; a
// healthy daemon is far inside all of them.
const (
	startDeadline = 30 * time.Second
	stopDeadline  = 20 * time.Second // the daemon itself gives shutdown 10 s
	waitDeadline  = 20 * time.Second // for an expected event to reach /sync
)

// ctx returns a context that ends with the test.
func ctx(t testing.TB) context.Context { return t.Context() }

// logBuffer collects a daemon's stdout and stderr across runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Daemon is one hearth process (or a sequence of them on the same data dir).
type Daemon struct {
	t       testing.TB
	DataDir string
	Addr    string   // host:port of the client API
	Extra   []string // extra flags for hearth run
	// Name is the server name; serverName when empty.
	Name string
	// Hooks for a daemon inside a network namespace (netns_test.go): Wrap
	// turns hearth's command line into the one that runs it there, Dial
	// reaches its client API, and Bare passes no flag but --data-dir and
	// Extra, since the defaults are what such tests are about.
	Wrap func(argv []string) []string
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Bare bool

	logs    *logBuffer
	runs    int
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error

	mu      sync.Mutex
	clients []*mautrix.Client
}

// StartDaemon starts a daemon on a fresh data dir; t.Cleanup stops it.
func StartDaemon(t testing.TB) *Daemon {
	t.Helper()
	d := NewDaemon(t, t.TempDir())
	d.Start()
	return d
}

// NewDaemon prepares a daemon on dataDir without starting it.
func NewDaemon(t testing.TB, dataDir string) *Daemon {
	d := &Daemon{t: t, DataDir: dataDir, logs: &logBuffer{}}
	t.Cleanup(func() {
		// A daemon must always stop cleanly: this catches shutdown panics
		// and, under -race, the race detector's exit status.
		if d.Running() {
			if err := d.Stop(); err != nil {
				t.Errorf("hearth did not exit cleanly on SIGTERM at the end of the test: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("hearth output (%s):\n%s", d.DataDir, d.logs.String())
		}
	})
	return d
}

// ServerName is the daemon's Matrix server name.
func (d *Daemon) ServerName() string {
	if d.Name != "" {
		return d.Name
	}
	return serverName
}

// URL is the client API's base URL.
func (d *Daemon) URL() string { return "http://" + d.Addr }

// Running reports whether a process is up.
func (d *Daemon) Running() bool {
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Logs is everything the daemon printed so far.
func (d *Daemon) Logs() string { return d.logs.String() }

// Start starts hearth run on the data dir and waits until it serves. It
// keeps the previous port when it can, so clients carry on after a
// restart; if that port was taken meanwhile it picks another one and moves
// the clients it made.
func (d *Daemon) Start() {
	d.t.Helper()
	if d.Running() {
		d.t.Fatal("Start: daemon is already running")
	}
	for attempt := 0; ; attempt++ {
		old := d.Addr
		if d.Addr == "" || (attempt > 0 && !d.Bare) { // a bare daemon listens where its defaults say
			d.Addr = freeAddr(d.t)
		}
		err := d.launch()
		if err == nil {
			if old != "" && old != d.Addr {
				d.moveClients()
			}
			return
		}
		if !errors.Is(err, errBind) || attempt == 3 {
			d.t.Fatalf("starting hearth: %v", err)
		}
	}
}

var errBind = errors.New("client listener could not bind")

func (d *Daemon) launch() error {
	d.runs++
	run := d.runs
	args := []string{"run", "--data-dir", d.DataDir, "--client-listen", d.Addr,
		"--registration", "open", "--server-name", d.ServerName(),
		// Test daemons keep their keys in their temp dir, never in the
		// developer's OS keyring.
		"--key-store", "file"}
	switch {
	case d.Bare:
		args = args[:3]
	case !federates(d.Extra):
		// The default, federation = lan, would listen on this machine's
		// networks: a test daemon that does not federate listens nowhere.
		args = append(args, "--federation", "off")
	}
	args = append(args, d.Extra...)
	argv := append([]string{hearthBin}, args...)
	if d.Wrap != nil {
		argv = d.Wrap(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	fmt.Fprintf(d.logs, "---- run %d: hearth %s\n", run, strings.Join(args, " "))
	startMark := len(d.logs.String())
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	d.cmd, d.done = cmd, done
	go func() {
		err := cmd.Wait()
		d.exitErr = err
		close(done)
	}()

	// Ready means this process logged that it listens and the API answers.
	hc := d.httpClient(2 * time.Second)
	deadline := time.Now().Add(startDeadline)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			out := d.logs.String()[startMark:]
			if strings.Contains(out, "client listener") {
				return fmt.Errorf("%w: %s", errBind, out)
			}
			return fmt.Errorf("hearth exited during start (%v):\n%s", d.exitErr, out)
		default:
		}
		if strings.Contains(d.logs.String()[startMark:], "hearth is ready") {
			resp, err := hc.Get(d.URL() + "/_matrix/client/versions")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.kill(syscall.SIGKILL)
	return fmt.Errorf("hearth was not ready within %v", startDeadline)
}

// Stop sends SIGTERM and waits for the process to exit, killing it if it
// does not within stopDeadline (which fails the test). It returns the
// process's exit error: nil for a clean exit with status 0.
func (d *Daemon) Stop() error {
	d.t.Helper()
	if !d.Running() {
		return d.exitErr
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopDeadline):
		d.t.Errorf("hearth did not exit within %v of SIGTERM; killing it", stopDeadline)
		d.kill(syscall.SIGKILL)
	}
	return d.exitErr
}

// Kill9 kills the process with SIGKILL, as a power cut would, and waits
// for it to be gone.
func (d *Daemon) Kill9() {
	d.t.Helper()
	if !d.Running() {
		d.t.Fatal("Kill9: daemon is not running")
	}
	d.kill(syscall.SIGKILL)
}

func (d *Daemon) kill(sig syscall.Signal) {
	d.cmd.Process.Signal(sig)
	<-d.done
}

// Restart stops the daemon cleanly (failing the test if it does not exit
// with status 0) and starts it again on the same data dir.
func (d *Daemon) Restart() {
	d.t.Helper()
	if err := d.Stop(); err != nil {
		d.t.Fatalf("hearth did not stop cleanly on SIGTERM: %v", err)
	}
	d.Start()
}

// childEnv is this process's environment without HEARTH_* settings, which
// would otherwise override the flags the tests pass.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEARTH_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr picks a free loopback port, never one it picked before: the
// kernel may hand a just-closed port out again, and two daemons of
// parallel tests were given the same one (one's client API, the other's
// federation listener). It picks below the kernel's ephemeral range,
// which every outgoing connection takes its local port from: a port
// from that range, free when picked, was taken by some test's connection
// before a daemon bound its federation listener to it.
func freeAddr(t testing.TB) string {
	if low := ephemeralLow(); low > minPickedPort+1000 {
		for range 1000 {
			addr := fmt.Sprintf("127.0.0.1:%d", minPickedPort+rand.IntN(low-minPickedPort))
			if _, taken := pickedAddrs.LoadOrStore(addr, true); taken {
				continue
			}
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr
			}
		}
	}
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, taken := pickedAddrs.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// minPickedPort is the lowest port freeAddr picks: above the ports
// services commonly listen on.
const minPickedPort = 10000

// ephemeralLow is the lowest port of the kernel's range for outgoing
// connections (Linux's ip_local_port_range), 0 when unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil {
		return 0
	}
	return low
}

// pickedAddrs are the addresses freeAddr has handed out in this process.
var pickedAddrs sync.Map

func (d *Daemon) moveClients() {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, _ := url.Parse(d.URL())
	for _, c := range d.clients {
		c.HomeserverURL = u
	}
}

// Client returns a mautrix client for this daemon, with credentials if
// token is not empty.
func (d *Daemon) Client(userID id.UserID, token string) *mautrix.Client {
	d.t.Helper()
	c, err := mautrix.NewClient(d.URL(), userID, token)
	if err != nil {
		d.t.Fatalf("mautrix client: %v", err)
	}
	c.DefaultHTTPRetries = 0
	if d.Dial != nil {
		c.Client = d.httpClient(c.Client.Timeout)
	}
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return c
}

// httpClient is an HTTP client that reaches the daemon's client API.
func (d *Daemon) httpClient(timeout time.Duration) *http.Client {
	if d.Dial == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: d.Dial}}
}

// UserID is the full user ID of a local user.
func UserID(name string) id.UserID { return id.NewUserID(name, serverName) }

// runHearth runs a hearth subcommand to completion and returns its exit
// code, stdout and stderr.
func runHearth(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx(t), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, hearthBin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("hearth %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	if c.Err() != nil {
		t.Fatalf("hearth %s did not finish within 30s", strings.Join(args, " "))
	}
	return code, stdout.String(), stderr.String()
}

// federates reports whether a test daemon's extra flags set up federation.
func federates(extra []string) bool {
	for _, a := range extra {
		if a == "--federation" || a == "--federation-listen" || strings.HasPrefix(a, "--federation=") || strings.HasPrefix(a, "--federation-listen=") {
			return true
		}
	}
	return false
}
