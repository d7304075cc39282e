package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench is the state shared by all sections: the config, one HTTP client,
// the temp root and every daemon started so far.
type bench struct {
	cfg  *config
	hc   *http.Client
	root string // temp dir holding each daemon's data dir and log

	mu      sync.Mutex
	daemons []*daemon
	n       int
}

// daemon is one running `hearth run` child process.
type daemon struct {
	cmd     *exec.Cmd
	pid     int
	base    string // http://127.0.0.1:PORT
	dataDir string
	logPath string
	exited  chan struct{} // closed when the process has been reaped
	waitErr error
	stopped bool
}

func newBench(cfg *config) (*bench, error) {
	root, err := os.MkdirTemp("", "hearth-bench-")
	if err != nil {
		return nil, err
	}
	return &bench{cfg: cfg, hc: newHTTPClient(), root: root}, nil
}

func (b *bench) logf(format string, args ...any) {
	if b.cfg.verbose {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before hearth binds it; start fails loudly if so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start execs a fresh daemon and waits until /versions answers 200. It
// returns the daemon and the time from exec to that first 200. extra
// flags go after the defaults, so they can override them (the last
// --server-name wins).
func (b *bench) start(ctx context.Context, extra ...string) (*daemon, time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	d, logf, err := b.newDaemonDir(fmt.Sprintf("http://127.0.0.1:%d", port))
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close() // the child keeps its own descriptor
	args := []string{"run", "--data-dir", d.dataDir,
		"--client-listen", fmt.Sprintf("127.0.0.1:%d", port), "--registration", "open", "--server-name", "bench.local",
		"--key-store", "file", // never the machine's OS keyring
		"--lan-discovery", "off"} // bench traffic stays on loopback: no mDNS on this machine's networks
	if !federates(extra) {
		// The default, federation = lan, would listen on this machine's
		// networks: a bench daemon that does not federate listens nowhere.
		args = append(args, "--federation", "off")
	}
	return b.launch(ctx, d, logf, append([]string{b.cfg.hearth}, append(args, extra...)...))
}

// newDaemonDir makes the directory of the next daemon (its data dir and
// log) and returns the daemon, not started, with its log file open.
func (b *bench) newDaemonDir(base string) (*daemon, *os.File, error) {
	b.mu.Lock()
	b.n++
	dir := filepath.Join(b.root, fmt.Sprintf("d%02d", b.n))
	b.mu.Unlock()
	d := &daemon{base: base, dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "hearth.log"), exited: make(chan struct{})}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, nil, err
	}
	return d, logf, nil
}

// launch execs argv (hearth run, possibly behind wrappers that exec it)
// as daemon d and waits until /versions answers 200, returning the time
// from exec to that first 200.
func (b *bench) launch(ctx context.Context, d *daemon, logf *os.File, argv []string) (*daemon, time.Duration, error) {
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = childEnv()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = childSysProcAttr()

	t0 := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, 0, err
	}
	d.pid = d.cmd.Process.Pid
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	b.mu.Lock()
	b.daemons = append(b.daemons, d)
	b.mu.Unlock()
	b.logf("started hearth pid %d on %s", d.pid, d.base)

	ready, err := d.waitReady(ctx, b.hc, t0, 10*time.Second)
	if err != nil {
		b.stop(d)
		return nil, 0, fmt.Errorf("%w\n%s", err, d.logTail())
	}
	return d, ready, nil
}

// waitReady polls GET /versions every 0.5 ms until it returns 200; the
// poll interval bounds the cold-start measurement's resolution.
func (d *daemon) waitReady(ctx context.Context, hc *http.Client, t0 time.Time, limit time.Duration) (time.Duration, error) {
	deadline := t0.Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return 0, fmt.Errorf("hearth exited before ready: %v", d.waitErr)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, "GET", d.base+"/_matrix/client/versions", nil)
		resp, err := hc.Do(req)
		if err == nil {
			drain(resp)
			if resp.StatusCode == 200 {
				cancel()
				return time.Since(t0), nil
			}
		}
		cancel()
		time.Sleep(500 * time.Microsecond)
	}
	return 0, fmt.Errorf("hearth not ready after %s", limit)
}

// stop sends SIGTERM, waits up to 10 s, then SIGKILL; it is idempotent.
func (b *bench) stop(d *daemon) {
	b.mu.Lock()
	if d.stopped {
		b.mu.Unlock()
		return
	}
	d.stopped = true
	b.mu.Unlock()
	b.hc.CloseIdleConnections()
	select {
	case <-d.exited:
		return
	default:
	}
	defer d.reportLog()
	t := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			fmt.Fprintf(os.Stderr, "hearth-bench: pid %d: bad exit after SIGTERM: %v\n", d.pid, d.waitErr)
		}
		b.logf("hearth pid %d stopped in %s", d.pid, time.Since(t).Round(time.Millisecond))
		return
	case <-time.After(10 * time.Second):
	}
	fmt.Fprintf(os.Stderr, "hearth-bench: pid %d ignored SIGTERM for 10 s, killing\n", d.pid)
	d.cmd.Process.Kill()
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "hearth-bench: pid %d not reaped after SIGKILL\n", d.pid)
	}
}

// stopAll stops every daemon this run started, concurrently.
func (b *bench) stopAll() {
	b.mu.Lock()
	ds := append([]*daemon(nil), b.daemons...)
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() { defer wg.Done(); b.stop(d) }()
	}
	wg.Wait()
}

// cleanup stops all daemons and removes the temp root. Safe to call twice.
func (b *bench) cleanup() {
	b.stopAll()
	if b.root != "" {
		os.RemoveAll(b.root)
	}
}

// alive reports an error if the daemon has exited (e.g. crashed mid-run).
func (d *daemon) alive() error {
	select {
	case <-d.exited:
		return fmt.Errorf("hearth pid %d exited: %v\n%s", d.pid, d.waitErr, d.logTail())
	default:
		return nil
	}
}

// logTail returns the last lines of the daemon's log, for error reports.
func (d *daemon) logTail() string {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  hearth log: " + strings.Join(lines, "\n  hearth log: ")
}

// reportLog prints the daemon's warning and error log lines to stderr:
// a healthy run under this load should have none.
func (d *daemon) reportLog() {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		return
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "panic") {
			if n++; n <= 5 {
				fmt.Fprintf(os.Stderr, "hearth-bench: pid %d log: %s\n", d.pid, l)
			}
		}
	}
	if n > 5 {
		fmt.Fprintf(os.Stderr, "hearth-bench: pid %d log: … %d warnings/errors in all (%s)\n", d.pid, n, d.logPath)
	}
}

// dbSize is the size of the daemon's bbolt file, 0 if unknown.
func (d *daemon) dbSize() int64 {
	fi, err := os.Stat(filepath.Join(d.dataDir, "hearth.db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// childEnv is our environment minus HEARTH_* so that nothing but the
// flags configures the daemon.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEARTH_") {
			env = append(env, kv)
		}
	}
	return env
}

// federates reports whether a bench daemon's extra flags set up federation.
func federates(extra []string) bool {
	for _, a := range extra {
		if a == "--federation" || a == "--federation-listen" || strings.HasPrefix(a, "--federation=") || strings.HasPrefix(a, "--federation-listen=") {
			return true
		}
	}
	return false
}
