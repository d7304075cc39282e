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
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"maunium.net/go/mautrix/event"
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
	args := []string{"build", "-o", hearthBin}
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

// UserID is the full user ID of a user of this daemon.
func (d *Daemon) UserID(name string) id.UserID { return id.NewUserID(name, d.ServerName()) }

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
// federation listener).
func freeAddr(t testing.TB) string {
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

// Password is the password the harness gives user name.
func Password(name string) string { return "pw-of-" + name + "-e2e" }

// UserID is the full user ID of a local user.
func UserID(name string) id.UserID { return id.NewUserID(name, serverName) }

// Register creates user name through /register with the dummy stage and
// returns a client logged in as that user.
func (d *Daemon) Register(name string) *mautrix.Client {
	d.t.Helper()
	c := d.Client("", "")
	resp, err := c.RegisterDummy(ctx(d.t), &mautrix.ReqRegister{Username: name, Password: Password(name)})
	if err != nil {
		d.t.Fatalf("register %s: %v", name, err)
	}
	if resp.UserID != d.UserID(name) {
		d.t.Fatalf("register %s: got user ID %s", name, resp.UserID)
	}
	c.SetCredentials(resp.UserID, resp.AccessToken)
	c.DeviceID = resp.DeviceID
	return c
}

// Login logs user name in with their password as a new device.
func (d *Daemon) Login(name string) *mautrix.Client {
	d.t.Helper()
	return d.LoginDevice(name, "")
}

// LoginDevice logs in with an initial device display name.
func (d *Daemon) LoginDevice(name, displayName string) *mautrix.Client {
	d.t.Helper()
	c := d.Client("", "")
	_, err := c.Login(ctx(d.t), &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name},
		Password:                 Password(name),
		InitialDeviceDisplayName: displayName,
		StoreCredentials:         true,
	})
	if err != nil {
		d.t.Fatalf("login %s: %v", name, err)
	}
	return c
}

// must pairs a call's result with its error; .get(t) fails the test on the
// error: must(c.JoinedRooms(ctx(t))).get(t).
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) get(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%v", r.err)
	}
	return r.v
}

// noErr fails the test on err, naming what was being done.
func noErr(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// wantMatrixErr checks that err is an HTTP error with the status and
// errcode given.
func wantMatrixErr(t testing.TB, err error, status int, errcode string, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %d %s", what, status, errcode)
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		t.Fatalf("%s: got %v, want HTTP %d %s", what, err, status, errcode)
	}
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	if he.Response.StatusCode != status || code != errcode {
		t.Fatalf("%s: got HTTP %d %s (%s), want %d %s", what, he.Response.StatusCode, code, he.ResponseBody, status, errcode)
	}
}

// Raw does a request with the client's token outside mautrix's typed
// helpers and returns the status and the body.
func Raw(t testing.TB, c *mautrix.Client, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, c.HomeserverURL.String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Client.Do(req) // a namespaced daemon's client dials into its namespace
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Sync runs one /sync with the given since token and filter (ID or JSON)
// and a long-poll timeout.
func Sync(t testing.TB, c *mautrix.Client, since, filter string, timeout time.Duration) *mautrix.RespSync {
	t.Helper()
	resp, err := c.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: since, FilterID: filter, Timeout: int(timeout.Milliseconds())})
	if err != nil {
		t.Fatalf("sync as %s since %q: %v", c.UserID, since, err)
	}
	return resp
}

// SyncUntil runs incremental syncs from since until pred accepts a
// response, and returns that response. Every response is passed to pred, so
// it can collect what it needs across them. It fails after waitDeadline.
func SyncUntil(t testing.TB, c *mautrix.Client, since, filter string, what string, pred func(*mautrix.RespSync) bool) *mautrix.RespSync {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for time.Now().Before(deadline) {
		resp := Sync(t, c, since, filter, 2*time.Second)
		if pred(resp) {
			return resp
		}
		since = resp.NextBatch
	}
	t.Fatalf("%s: not seen in /sync of %s within %v", what, c.UserID, waitDeadline)
	return nil
}

// Quiesce syncs until a sync with timeout 0 returns nothing new, so that
// the returned token is past every change made so far.
func Quiesce(t testing.TB, c *mautrix.Client, since string) string {
	t.Helper()
	for range 50 {
		resp := Sync(t, c, since, "", 0)
		if resp.NextBatch == since {
			return since
		}
		since = resp.NextBatch
	}
	t.Fatalf("sync of %s did not settle", c.UserID)
	return ""
}

// TimelineIDs returns the event IDs of a room's timeline in a sync.
func TimelineIDs(resp *mautrix.RespSync, roomID id.RoomID) []id.EventID {
	jr := resp.Rooms.Join[roomID]
	if jr == nil {
		return nil
	}
	var out []id.EventID
	for _, ev := range jr.Timeline.Events {
		out = append(out, ev.ID)
	}
	return out
}

// TimelineHas reports whether the room's timeline in resp holds event eid.
func TimelineHas(resp *mautrix.RespSync, roomID id.RoomID, eid id.EventID) bool {
	for _, x := range TimelineIDs(resp, roomID) {
		if x == eid {
			return true
		}
	}
	return false
}

// SendText sends a text message and returns its event ID.
func SendText(t testing.TB, c *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(ctx(t), roomID, body)
	if err != nil {
		t.Fatalf("%s sends %q: %v", c.UserID, body, err)
	}
	return resp.EventID
}

// History pages /messages backwards from the newest event to the start of
// the room and returns every event, oldest first. It fails on a repeated
// event (an overlap between pages) or a page loop.
func History(t testing.TB, c *mautrix.Client, roomID id.RoomID, from string, pageSize int) []*event.Event {
	t.Helper()
	var rev []*event.Event
	seen := map[id.EventID]bool{}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("History: too many pages")
		}
		resp, err := c.Messages(ctx(t), roomID, from, "", mautrix.DirectionBackward, nil, pageSize)
		if err != nil {
			t.Fatalf("/messages as %s from %q: %v", c.UserID, from, err)
		}
		for _, ev := range resp.Chunk {
			if seen[ev.ID] {
				t.Fatalf("/messages returned %s twice (page from %q)", ev.ID, from)
			}
			seen[ev.ID] = true
			rev = append(rev, ev)
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		if resp.End == from {
			t.Fatalf("/messages: end token %q equals from", from)
		}
		from = resp.End
	}
	out := make([]*event.Event, len(rev))
	for i, ev := range rev {
		out[len(rev)-1-i] = ev
	}
	return out
}

// eventIDs lists the IDs of events.
func eventIDs(evs []*event.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// body is the body of a message event, or "".
func body(ev *event.Event) string {
	if ev == nil {
		return ""
	}
	s, _ := ev.Content.Raw["body"].(string)
	return s
}

// CreateRoom creates a room and fails the test on error.
func CreateRoom(t testing.TB, c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	resp, err := c.CreateRoom(ctx(t), req)
	if err != nil {
		t.Fatalf("%s creates a room: %v", c.UserID, err)
	}
	return resp.RoomID
}

// Join joins c to roomID (which must let them in) and fails on error.
func Join(t testing.TB, c *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	if _, err := c.JoinRoomByID(ctx(t), roomID); err != nil {
		t.Fatalf("%s joins %s: %v", c.UserID, roomID, err)
	}
}

// PublicRoom has owner create a public room and the others join it.
func PublicRoom(t testing.TB, owner *mautrix.Client, others ...*mautrix.Client) id.RoomID {
	t.Helper()
	roomID := CreateRoom(t, owner, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "e2e"})
	for _, c := range others {
		Join(t, c, roomID)
	}
	return roomID
}

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
