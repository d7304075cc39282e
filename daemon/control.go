package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/localapi/control"
)

// controlSecretName is the secret the CLI and tray present to the control
// API. It lives in the same store as the signing key.
const controlSecretName = "control.secret"

// controlSocket is the control API's unix socket in the data dir.
const controlSocket = "control.sock"

// ControlEndpoint is how a client on this machine reaches a daemon's
// control API: its loopback address, its socket and the credential.
type ControlEndpoint struct {
	Addr, Socket, Secret string
}

// Control returns the control endpoint of the daemon configured by cfg
// (running or not). A daemon that has never started has no secret yet.
func Control(cfg Config) (ControlEndpoint, error) {
	store, _, err := openSecrets(cfg)
	if err != nil {
		return ControlEndpoint{}, err
	}
	secret, err := store.Get(controlSecretName)
	if errors.Is(err, secrets.ErrNotFound) {
		err = ErrNeverStarted
	}
	return ControlEndpoint{Addr: cfg.ClientAddr(), Socket: filepath.Join(cfg.DataDir, controlSocket), Secret: secret}, err
}

// ErrNeverStarted is Control's error for a data dir no daemon has started
// in yet: there is no control credential, and certainly no daemon to ask
// (the tray at login starts one then, cmd/hearth/tray.go).
var ErrNeverStarted = errors.New("no control credential yet: start Hearth once with 'hearth run'")

// LogRing keeps the last lines the daemon logged, for 'hearth logs' and
// the console. It is an io.Writer placed beside the log output.
type LogRing struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// NewLogRing keeps up to n lines.
func NewLogRing(n int) *LogRing { return &LogRing{lines: make([]string, n)} }

func (l *LogRing) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.lines[l.next] = line
		l.next = (l.next + 1) % len(l.lines)
		l.full = l.full || l.next == 0
	}
	return len(p), nil
}

// Tail returns the last n lines, oldest first.
func (l *LogRing) Tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := append([]string(nil), l.lines[:l.next]...)
	if l.full {
		all = append(append([]string(nil), l.lines[l.next:]...), all...)
	}
	if n < len(all) {
		all = all[len(all)-n:]
	}
	return all
}

// controlBackend answers the control API from the running daemon.
type controlBackend struct {
	d       *Daemon
	started time.Time
	keys    string // where the secrets are, for status
	warning string
}

func (b *controlBackend) Status() control.Status {
	users, _ := b.d.accounts.List()
	st := control.Status{
		Version: Version, UptimeSeconds: int64(time.Since(b.started).Seconds()), ServerName: b.d.cfg.ServerName,
		Listeners:   map[string]string{"client": b.d.clientURL(), "control_socket": filepath.Join(b.d.cfg.DataDir, controlSocket)},
		QueueDepths: map[string]int{}, StorageBytes: b.d.db.Size(), Accounts: len(people(users)),
		KeyStore: b.keys, KeyStoreWarning: b.warning, UnreadHighlights: b.ownerHighlights(users),
		Ringing: b.ringing(), WelcomePending: b.welcomePending(users),
	}
	if lan := b.d.lanClientURL(); lan != "" {
		// What the console shows a phone (its QR code: the name first).
		st.Listeners["client_lan"] = lan
		if name := b.d.lanClientNameURL(lan); name != "" {
			st.Listeners["client_lan_name"] = name
		}
	}
	if f := b.d.fed; f != nil {
		st.FederationPaused = f.Paused()
		st.Federation = !st.FederationPaused && f.Mode() != FederationOff
		st.Listeners["federation"] = "https://" + f.Addr()
		for _, q := range f.queue.Status() {
			if q.Queued > 0 {
				st.QueueDepths[q.Name] = q.Queued
			}
		}
		st.Reachable = f.service.LastReachability().Reachable
	}
	st.Discovery = b.d.lanDiscoveryMode()
	if lan := b.d.lanService(); lan != nil {
		peers := lan.Peers()
		st.Peers = len(peers)
		for _, p := range peers {
			if p.KeyChanged && !p.KeyRefused {
				st.PeerKeyChanges++
			}
		}
	}
	st.FederationMode = b.d.federationModeStatus().Mode
	st.Voicemail = b.d.voicemailStatus() // calls.go
	return st
}

func (b *controlBackend) Federation() control.FederationStatus {
	st := b.d.federationModeStatus()
	f := b.d.fed
	if f == nil {
		return st
	}
	st.Paused = f.Paused()
	if r := f.service.LastReachability(); !r.Checked.IsZero() {
		st.Reachability = r
	}
	for _, q := range f.queue.Status() {
		st.Destinations = append(st.Destinations, control.Destination{Name: q.Name, Queued: q.Queued, Failures: q.Failures,
			LastError: q.LastError, NextTry: q.NextTry, LastSent: q.LastSent})
	}
	return st
}

func (b *controlBackend) FederationPause(paused bool) error {
	f := b.d.fed
	if f == nil {
		return errors.New("federation is off: switch it on with 'hearth federation mode lan' (then restart Hearth)")
	}
	if paused {
		f.Pause()
		return nil
	}
	return f.Resume()
}

// owner is the person at this computer: the first admin account (the one
// made at first start).
func (b *controlBackend) owner() string {
	users, _ := b.d.accounts.List()
	for _, u := range users {
		if u.Admin {
			return u.Localpart
		}
	}
	return ""
}

// ChatClientURL fills the chat_client_url template for user with a login
// token; empty when no chat client is configured.
func (b *controlBackend) ChatClientURL(user, loginToken string) string {
	tmpl := b.d.cfg.ChatClientURL
	if tmpl == "" {
		return ""
	}
	if user == "" {
		user = b.owner()
	}
	if !strings.HasPrefix(user, "@") {
		user = b.d.accounts.UserID(user)
	}
	return strings.NewReplacer("{homeserver}", url.QueryEscape(b.d.clientURL()), "{user}", url.QueryEscape(user),
		"{login_token}", url.QueryEscape(loginToken)).Replace(tmpl)
}

// ringing lists the calls ringing for the owner, as push follows them.
func (b *controlBackend) ringing() []control.RingingCall {
	var out []control.RingingCall
	for _, c := range b.d.push.Ringing() {
		out = append(out, control.RingingCall{Caller: c.Caller, DisplayName: c.CallerName, RoomID: c.RoomID, CallID: c.CallID})
	}
	return out
}

// ownerHighlights counts the unread mentions of the admin accounts: what
// the tray shows the person at this computer.
func (b *controlBackend) ownerHighlights(users []account.User) int {
	n := 0
	for _, u := range users {
		if !u.Admin {
			continue
		}
		id := b.d.accounts.UserID(u.Localpart)
		rooms, _ := b.d.rooms.JoinedRooms(id)
		for _, r := range rooms {
			if c, err := b.d.push.Counts(id, r, nil); err == nil {
				n += c.All.Highlights
			}
		}
	}
	return n
}

func (b *controlBackend) Accounts() ([]string, error) {
	users, err := b.d.accounts.List()
	ids := []string{}
	for _, u := range people(users) {
		ids = append(ids, b.d.accounts.UserID(u.Localpart))
	}
	return ids, err
}

// people leaves out the service accounts the daemon acts as (the echo
// test user, calls.go): they are not anyone's account to list or count.
func people(users []account.User) []account.User {
	var out []account.User
	for _, u := range users {
		if !u.Service {
			out = append(out, u)
		}
	}
	return out
}

func (b *controlBackend) AddAccount(name, password string) (string, string, error) {
	if password == "" {
		password = account.RandomString(12)
	}
	if err := b.d.accounts.Create(context.Background(), name, password, false); err != nil {
		return "", "", controlError("name", err)
	}
	return b.d.accounts.UserID(name), password, nil
}

func (b *controlBackend) SetPassword(name, password string) (string, error) {
	if password == "" {
		password = account.RandomString(12)
	}
	dropped, err := b.d.accounts.SetPassword(context.Background(), name, password, true, "")
	if err != nil {
		return "", controlError("name", err)
	}
	if err := dropKeys(b.d.keys, b.d.accounts.UserID(name), dropped); err != nil {
		return "", err
	}
	return password, nil
}

// welcomeShownFile in the data dir records that the tray opened the
// console's welcome (POST /_hearth/v1/welcome/shown): a file, made with
// O_EXCL, so of two trays exactly one opens it, and its absence (a new
// data dir) is the state that opens it.
const welcomeShownFile = "welcome-shown"

// welcomePending: the owner still has the generated, unused password and
// the welcome was not opened yet (control.Status.WelcomePending).
func (b *controlBackend) welcomePending(users []account.User) bool {
	generated := false
	for _, u := range users {
		generated = generated || (u.Admin && u.PasswordGenerated && !u.Deactivated)
	}
	if !generated {
		return false
	}
	_, err := os.Stat(filepath.Join(b.d.cfg.DataDir, welcomeShownFile))
	return errors.Is(err, os.ErrNotExist)
}

// Welcome answers the console's first-run section (control/welcome.go).
func (b *controlBackend) Welcome() (control.Welcome, error) {
	lp := b.owner()
	u, err := b.d.accounts.Get(lp)
	if err != nil {
		return control.Welcome{}, err
	}
	if u == nil {
		return control.Welcome{}, &control.Error{Status: http.StatusNotFound, Code: "not_found", Message: "this server has no owner account"}
	}
	id := b.d.accounts.UserID(lp)
	return control.Welcome{UserID: id, Homeserver: b.d.clientURL(),
		CanSetPassword: u.PasswordGenerated && !u.Deactivated, ChatClientURL: b.ChatClientURL(id, "")}, nil
}

// SetFirstPassword sets the owner's first password, which the account
// service allows only while the generated one is unused (account.SetFirstPassword).
func (b *controlBackend) SetFirstPassword(password string) (string, error) {
	lp := b.owner()
	if lp == "" {
		return "", &control.Error{Status: http.StatusNotFound, Code: "not_found", Message: "this server has no owner account"}
	}
	if err := b.d.accounts.SetFirstPassword(context.Background(), lp, password); err != nil {
		return "", controlError("password", err)
	}
	slog.Info("the owner set the first password in the console", "user", b.d.accounts.UserID(lp))
	return b.d.accounts.UserID(lp), nil
}

// WelcomeShown records that the tray opened the welcome; true the first time.
func (b *controlBackend) WelcomeShown() (bool, error) {
	f, err := os.OpenFile(filepath.Join(b.d.cfg.DataDir, welcomeShownFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record the welcome as shown: %w", err)
	}
	return true, f.Close()
}

// controlError turns a Matrix error from a service into a control error
// that names the field at fault.
func controlError(field string, err error) error {
	var me *matrixerr.Error
	if errors.As(err, &me) {
		return &control.Error{Status: me.Status, Code: strings.ToLower(strings.TrimPrefix(me.Code, "M_")), Message: me.Message, Field: field}
	}
	return err
}

func (b *controlBackend) Config() map[string]string {
	out := map[string]string{}
	cfg := b.d.cfg
	for _, f := range fields(&cfg) {
		out[f.key] = fmt.Sprint(f.v.Interface())
	}
	return out
}

// SetConfig checks the new value as a whole config would be checked at
// start, then writes it to the config file, keeping the file's comments
// and other lines. The running daemon keeps its config until restarted.
func (b *controlBackend) SetConfig(key, value string) error {
	next := b.d.cfg
	var target *field
	for _, f := range fields(&next) {
		if f.key == key {
			target = &f
		}
	}
	if target == nil {
		return control.BadRequest(key, "unknown config key "+key)
	}
	if err := checkStorable(value); err != nil {
		return control.BadRequest(key, err.Error())
	}
	if key == "server_name" {
		// The data dir refuses to start under another name than the one
		// it recorded (datadir.go): writing one would only break the
		// next start.
		if value != b.d.cfg.ServerName {
			return control.BadRequest(key, fmt.Sprintf("the data dir is recorded under %q; a new server name needs a new data dir", b.d.cfg.ServerName))
		}
		next.serverNameFromData = false // written to the file, it must pass the checks
	}
	if err := setField(target.v, value); err != nil {
		return control.BadRequest(key, err.Error())
	}
	if err := next.Validate(); err != nil {
		return control.BadRequest(key, err.Error())
	}
	return writeConfigValue(b.d.cfg.File, key, value)
}

func (b *controlBackend) Logs(n int) []string { return b.d.logs.Tail(n) }

func (b *controlBackend) Shutdown() { b.d.requestStop() }

func (b *controlBackend) LoginToken(name string) (string, error) {
	lp := name
	if strings.HasPrefix(name, "@") {
		lp = b.d.accounts.Localpart(name)
	}
	if name == "" {
		lp = b.owner()
	}
	if u, err := b.d.accounts.Get(lp); err != nil || u == nil {
		return "", control.BadRequest("user", "no local user "+name)
	}
	tok, err := b.d.accounts.CreateLoginToken(context.Background(), lp, 2*time.Minute)
	if err != nil {
		return "", controlError("user", err) // e.g. a deactivated account
	}
	return tok, nil
}

// writeConfigValue sets key = value in the config file, replacing the
// key's line or appending one. The file is replaced atomically: a new file
// in the same directory, synced, given the old file's mode (0600 for a new
// one), then renamed over it and the directory synced, so a crash leaves
// the old file or the new one, never half of one.
func writeConfigValue(path, key, value string) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // replace the file a symlink points at, not the link
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read config: %w", err)
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	var out []string
	done := false
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			line, done = key+" = "+value, true
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if !done {
		out = append(out, key+" = "+value)
	}
	return replaceFile(path, []byte(strings.Join(out, "\n")+"\n"), mode)
}

// replaceFile atomically replaces path with data.
func replaceFile(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	// The rename is durable once the directory is synced; Windows cannot
	// open a directory for that, and there the rename is what we have.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// startControl makes the control credential if needed, serves the control
// API on the unix socket, and returns the handler to mount at /_hearth/ on
// the loopback listener.
func (d *Daemon) startControl(sec secrets.Store, keysWhere, warning string) (http.Handler, error) {
	secret, err := sec.Get(controlSecretName)
	if errors.Is(err, secrets.ErrNotFound) {
		secret = account.RandomString(32)
		err = sec.Set(controlSecretName, secret)
	}
	if err != nil {
		return nil, fmt.Errorf("control credential: %w", err)
	}
	ctl := control.New(&controlBackend{d: d, started: time.Now(), keys: keysWhere, warning: warning}, secret)
	sock := filepath.Join(d.cfg.DataDir, controlSocket)
	os.Remove(sock) // a stale socket from a crash; the data file lock says we are the only daemon
	ln, err := net.Listen("unix", sock)
	if err != nil {
		slog.Warn("control socket unavailable; the control API is on the loopback listener only", "err", err)
		return ctl, nil
	}
	os.Chmod(sock, 0o600)
	d.control = d.limits.server(ctl.OverSocket(), nil) // only the owner can reach the socket: deadlines, no cap
	go d.control.Serve(ln)
	return ctl, nil
}
