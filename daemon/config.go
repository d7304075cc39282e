package daemon

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
)

// Config is every setting of the daemon. Each field has a config-file key
// (the `key` tag), a flag (--key with _ as -) and an environment variable
// (HEARTH_KEY), with precedence flag > environment > file > default.
type Config struct {
	ServerName         string `key:"server_name" help:"The Matrix server name: the part after ':' in user IDs. Default: for a new data dir, this machine's name with a suffix from the signing key, under .local (e.g. laptop-k3x9q2.local), which LAN peers find through discovery; the name recorded in an existing one. Recorded at first start: the data dir then refuses to start under another name, so choose a public domain before the first start if this server is to federate over the internet."`
	DataDir            string `key:"data_dir" help:"Where the bbolt file and keys live. Default: the OS user data dir (XDG_DATA_HOME/hearth, ~/Library/Application Support/Hearth, %AppData%\\Hearth)."`
	ClientListen       string `key:"client_listen" help:"Address of the Client-Server API: loopback serves this computer only; 0.0.0.0:8008 also serves phones on your network, over plain http (docs/getting-started.md)."`
	Federation         string `key:"federation" enum:"off,lan,internet" help:"Who may reach this server's Server-Server API: lan (loopback and the networks this machine is on; a self-signed certificate made at first start unless tls_cert is set), internet (anyone; needs tls_cert and tls_key from a CA) or off. Unset in a config that sets federation_listen, it is internet, as before this key existed."`
	FederationListen   string `key:"federation_listen" help:"Address of the Server-Server API (TLS). Empty: :8448 (in lan mode any free port when 8448 is taken; LAN peers learn the port through discovery)."`
	TLSCert            string `key:"tls_cert" help:"PEM certificate chain for the federation listener. Needed in internet mode; in lan mode, empty uses the self-signed certificate kept with the signing key."`
	TLSKey             string `key:"tls_key" help:"PEM private key for the federation listener (with tls_cert)."`
	CAFile             string `key:"ca_file" help:"Extra PEM CA certificates trusted for outbound federation, besides the system roots."`
	FederationServers  string `key:"federation_servers" help:"Fixed addresses of other servers, as name=host:port pairs separated by commas; consulted before DNS and .well-known."`
	FedAllowNetworks   string `key:"federation_allow_networks" help:"Non-public networks outbound federation may connect to, as CIDR prefixes separated by commas (e.g. 10.0.0.0/8). Loopback, private, link-local and CGNAT addresses are refused otherwise, except federation_servers entries and verified LAN peers."`
	WellKnownServer    string `key:"well_known_server" help:"If set (host or host:port), served as /.well-known/matrix/server on the federation listener, delegating this server name to that address."`
	TURN               string `key:"turn" enum:"auto,on,off" help:"The built-in TURN relay for calls (clients get it from /voip/turnServer): auto (on when federation is not off, where federation listens: the LAN by default), on (always; on loopback when federation is off) or off. Not started when turn_uris names an external server; follows federation when its mode is switched while Hearth runs."`
	TURNListen         string `key:"turn_listen" help:"Address of the built-in TURN relay's UDP and TCP listeners, IP:port. Empty: :3478 on every address (any free port when 3478 is taken), or 127.0.0.1:3478 when federation is off."`
	TURNAllowNetworks  string `key:"turn_allow_networks" help:"Networks the built-in TURN relay also serves and relays to, as CIDR prefixes separated by commas (e.g. 127.0.0.0/8 for calls on this machine alone). Otherwise it relays only to the networks this machine is on (never loopback or link-local), and to the internet only when federation = internet."`
	TURNURIs           string `key:"turn_uris" help:"An external TURN server for clients instead of the built-in one, as turn: or turns: URIs separated by commas (e.g. turn:turn.example.org:3478?transport=udp); needs turn_shared_secret (coturn's static-auth-secret)."`
	TURNSharedSecret   string `key:"turn_shared_secret" help:"The shared secret of the external TURN server in turn_uris (coturn: use-auth-secret, static-auth-secret)."`
	TURNUserLifetime   int64  `key:"turn_user_lifetime" help:"Seconds the TURN credentials that /voip/turnServer hands out stay valid (its ttl)."`
	TURNBandwidth      int64  `key:"turn_bandwidth_bytes" help:"Bytes a second one allocation of the built-in TURN relay may relay, both ways together; more is dropped. 0: no limit."`
	EchoTest           OnOff  `key:"echo_test" help:"on or off: the echo test user @echo:<server name>, which joins rooms it is invited to and answers any call there by sending the caller's audio and video back, to test a microphone, camera and network (calls/agent; a call lasts at most 10 minutes)."`
	Voicemail          OnOff  `key:"voicemail" help:"on or off: answer a 1:1 call to the owner that none of their devices answers within voicemail_after, as the owner's device 'Hearth voicemail': play the greeting, record the caller and post the recording into the room as a voice message. Not in encrypted rooms, whose call invites the server cannot read."`
	VoicemailAfter     int64  `key:"voicemail_after" help:"Seconds an unanswered call to the owner rings before voicemail answers (the caller's invite lifetime, usually 60 s, caps it)."`
	VoicemailMax       int64  `key:"voicemail_max" help:"The longest voicemail recording, in seconds; voicemail hangs up then."`
	VoicemailGreeting  string `key:"voicemail_greeting" help:"An Ogg/Opus file played to callers before recording. Empty: the greeting that ships with Hearth."`
	LANDiscovery       string `key:"lan_discovery" enum:"on,browse,off" help:"on, browse or off: find other Hearth daemons on the local network over mDNS ('hearth peers') and, while federation is on, announce this one to them (browse: find them, never announce)."`
	LANInterfaces      string `key:"lan_interfaces" help:"Network interfaces LAN discovery runs on, by name, comma-separated (e.g. wlan0,eth0); empty: every up, multicast-capable interface but loopback."`
	TrustedNotaries    string `key:"trusted_notaries" help:"Servers trusted to vouch for other servers' keys (/key/v2/query), comma-separated, each as name or name=ed25519:keyid:base64key to pin its key."`
	Registration       string `key:"registration" enum:"closed,token,open" help:"Who may create accounts: closed (only 'hearth account add'), token (with a registration token) or open."`
	RegistrationTokens string `key:"registration_tokens" help:"Comma-separated registration tokens accepted when registration = token."`
	KeyStore           string `key:"key_store" enum:"auto,keyring,file" help:"Where secrets (the signing key) live: auto (the OS keyring if one answers, else a 0600 file in the data dir), keyring (refuse to start without one) or file."`
	DelayedMaxDelay    int64  `key:"delayed_events_max_delay" help:"Seconds: the longest delay a client may give a delayed event (MSC4140, which Element Call uses so that a call member who vanishes is shown as gone; a longer delay gets 400 with org.matrix.msc4140.errcode M_MAX_DELAY_EXCEEDED and the maximum). 0 turns delayed events off: /versions no longer offers them and new ones are refused, while those already scheduled are still sent."`
	RoomVersion        string `key:"room_version" help:"Room version for new rooms when the client names none."`
	MaxRequestBytes    int64  `key:"max_request_bytes" help:"Largest request body the client API reads; larger ones get M_TOO_LARGE."`
	MaxUploadBytes     int64  `key:"max_upload_bytes" help:"Largest media upload in bytes; larger ones get M_TOO_LARGE (checked from Content-Length and while reading)."`
	MediaQuotaBytes    int64  `key:"media_quota_bytes" help:"Total bytes of media one user may upload; 0 means no quota. Over it, uploads get 403 M_FORBIDDEN."`
	MaxImagePixels     int64  `key:"max_image_pixels" help:"Largest image (width × height, read from its header) that thumbnails are made from; larger ones get M_TOO_LARGE without being decoded."`
	ThumbnailMemory    int64  `key:"thumbnail_memory_bytes" help:"Memory the image decodes for thumbnails may take together (estimated at 4 bytes a pixel, 8 for 16-bit images); more waits, and one image over it alone gets M_TOO_LARGE."`
	URLPreviews        OnOff  `key:"url_previews" help:"on or off: whether the server fetches web pages for link previews. Private and loopback addresses are always refused."`
	DesktopNotify      string `key:"desktop_notifications" enum:"on,highlights,off" help:"Desktop notifications for the owner's account: on, highlights (mentions only) or off (do not disturb). None are shown while one of the owner's Matrix clients is active."`
	ChatClientURL      string `key:"chat_client_url" help:"A web Matrix client for 'hearth open chat' and the tray's Open chat, as a URL template: {homeserver}, {user} and {login_token} (a single-use login token for the owner, valid two minutes) are filled in."`
	LogLevel           string `key:"log_level" enum:"debug,info,warn,error" help:"debug, info, warn or error."`
	LogFile            string `key:"log_file" help:"If set, logs go to this file instead of standard error, rotated at 10 MiB with 3 old files kept (file.1 newest). Empty: standard error, for systemd's journal or a terminal."`

	// File is the config file that was read (or would be): where the
	// control API writes settings. It is not itself a setting.
	File string
	// serverNameDefault is set by Load when no file, variable or flag
	// named the server: the machine name stands in, and a data dir that
	// recorded another name keeps its own (daemon/datadir.go).
	serverNameDefault bool
	// serverNameLegacy is the machine-name default of the Hearth releases
	// that did not record the name (legacyMachineName): an upgraded data
	// dir holds data under it (daemon/datadir.go).
	serverNameLegacy string
	// serverNameFromData: the name was read from the data dir, not the
	// config, and was never checked against the grammar (an upgraded data
	// dir may hold "my_box"); checkShapes does not refuse it then.
	serverNameFromData bool

	// net overrides the listeners' deadlines and caps; only tests set it
	// (zero fields mean the defaults of listen.go).
	net netLimits
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		ServerName:      machineServerName(host),
		DataDir:         defaultDataDir(),
		ClientListen:    "127.0.0.1:8008",
		Federation:      FederationLAN,
		Registration:    "closed",
		KeyStore:        KeyStoreAuto,
		RoomVersion:     "10",
		MaxRequestBytes: 1 << 20,
		MaxUploadBytes:  50 << 20,
		MaxImagePixels:  32_000_000,
		ThumbnailMemory: 256 << 20,
		URLPreviews:     false,
		LANDiscovery:    "on",
		DesktopNotify:   "on",
		LogLevel:        "info",
		// Delayed events (internal/delayed): Synapse's setting for Element Call.
		DelayedMaxDelay: 86400,

		// The TURN relay (daemon/turn.go).
		TURN:             "auto",
		TURNUserLifetime: 86400,
		TURNBandwidth:    512 << 10,
		// The call agent (daemon/calls.go).
		EchoTest:       true,
		Voicemail:      true,
		VoicemailAfter: 20,
		VoicemailMax:   120,
	}
}

// defaultDataDir is the OS's per-user data directory plus Hearth.
func defaultDataDir() string {
	home, _ := os.UserHomeDir()
	switch runtime.GOOS {
	case "windows":
		if app := os.Getenv("AppData"); app != "" {
			return filepath.Join(app, "Hearth")
		}
	case "darwin":
		return filepath.Join(home, "Library", "Application Support", "Hearth")
	default:
		if xdg := os.Getenv("XDG_DATA_HOME"); xdg != "" {
			return filepath.Join(xdg, "hearth")
		}
	}
	return filepath.Join(home, ".local", "share", "hearth")
}

// OnOff is a setting written "on" or "off" (setField reads it).
type OnOff bool

func (o OnOff) String() string {
	if o {
		return "on"
	}
	return "off"
}

// field is one settable config key.
type field struct {
	key, help string
	// enum, when the key has one, lists the values it may take.
	enum []string
	v    reflect.Value
}

// fields lists the config's settable fields in declaration order; fields
// without a key tag (like File) are not settings.
func fields(c *Config) []field {
	var out []field
	rv := reflect.ValueOf(c).Elem()
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if key := f.Tag.Get("key"); key != "" {
			var enum []string
			if e := f.Tag.Get("enum"); e != "" {
				enum = strings.Split(e, ",")
			}
			out = append(out, field{key, f.Tag.Get("help"), enum, rv.Field(i)})
		}
	}
	return out
}

func setField(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool: // OnOff
		if s != "on" && s != "off" {
			return fmt.Errorf("must be on or off, not %q", s)
		}
		v.SetBool(s == "on")
	case reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", s)
		}
		v.SetInt(n)
	}
	return nil
}

// Load builds the config from defaults, the file, the environment and the
// flags already parsed into fs (only flags set on the command line count).
// configFile may be empty: then <data dir>/hearth.conf is read if present.
func Load(fs *flag.FlagSet, configFile string, getenv func(string) string) (Config, error) {
	c := Defaults()
	flagVal := func(key string) (string, bool) {
		set := false
		val := ""
		fs.Visit(func(f *flag.Flag) {
			if f.Name == strings.ReplaceAll(key, "_", "-") {
				set, val = true, f.Value.String()
			}
		})
		return val, set
	}
	// The data dir decides where the default config file is, so resolve it first.
	if v := getenv("HEARTH_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v, ok := flagVal("data_dir"); ok {
		c.DataDir = v
	}
	explicit := configFile != ""
	if !explicit {
		configFile = filepath.Join(c.DataDir, "hearth.conf")
	}
	c.File = configFile
	machineName := c.ServerName
	c.ServerName = ""
	// Unset federation is told apart from a chosen one: see legacyFederation.
	c.Federation = ""
	if err := c.readFile(configFile, explicit); err != nil {
		return c, err
	}
	for _, f := range fields(&c) {
		if v := getenv("HEARTH_" + strings.ToUpper(f.key)); v != "" {
			if err := setField(f.v, v); err != nil {
				return c, fmt.Errorf("HEARTH_%s: %w", strings.ToUpper(f.key), err)
			}
		}
		if v, ok := flagVal(f.key); ok {
			if err := setField(f.v, v); err != nil {
				return c, fmt.Errorf("--%s: %w", strings.ReplaceAll(f.key, "_", "-"), err)
			}
		}
	}
	if c.ServerName == "" {
		host, _ := os.Hostname()
		c.ServerName, c.serverNameDefault, c.serverNameLegacy = machineName, true, legacyMachineName(host)
	}
	if c.Federation == "" {
		c.Federation = legacyFederation(c.FederationListen)
	}
	return c, c.Validate()
}

// machineServerName is the default server name for a new data dir: the
// machine's name without its domain, lower-cased, with anything a server
// name may not hold (spec: appendices, server names; e.g. the "_" some
// machines are named with) turned into "-", so a fresh install starts
// whatever the machine is called.
func machineServerName(host string) string {
	label, _, _ := strings.Cut(strings.ToLower(host), ".")
	name := strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, label), "-")
	if name == "" {
		return "localhost"
	}
	return name
}

// legacyMachineName is the default server name of the Hearth releases
// before names were checked and recorded: the machine's name without its
// domain, lower-cased, as it is ("my_box"). Data dirs they made carry it.
func legacyMachineName(host string) string {
	label, _, _ := strings.Cut(strings.ToLower(host), ".")
	if label == "" {
		return "localhost"
	}
	return label
}

// RegisterFlags adds a flag for every config key to fs.
func RegisterFlags(fs *flag.FlagSet) {
	d := Defaults()
	for _, f := range fields(&d) {
		fs.String(strings.ReplaceAll(f.key, "_", "-"), fmt.Sprint(f.v.Interface()), f.help)
	}
}

// readFile reads "key = value" lines; # starts a comment.
func (c *Config) readFile(path string, mustExist bool) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) && !mustExist {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	byKey := map[string]reflect.Value{}
	for _, fl := range fields(c) {
		byKey[fl.key] = fl.v
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("config %s:%d: expected key = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		fv, known := byKey[k]
		if !known {
			return fmt.Errorf("config %s:%d: unknown key %q", path, n, k)
		}
		if err := setField(fv, v); err != nil {
			return fmt.Errorf("config %s:%d: %s: %w", path, n, k, err)
		}
	}
	return sc.Err()
}

// Validate checks values that would otherwise fail later and less clearly.
func (c *Config) Validate() error {
	if err := checkShapes(c); err != nil {
		return err
	}
	if c.Registration == "token" && strings.TrimSpace(c.RegistrationTokens) == "" {
		return fmt.Errorf("registration = token needs registration_tokens")
	}
	if c.ServerName == "" || strings.ContainsAny(c.ServerName, "/@ ") {
		return fmt.Errorf("server_name %q is not a valid server name", c.ServerName)
	}
	if c.ClientListen == "" {
		return fmt.Errorf("client_listen must be set")
	}
	if c.MaxRequestBytes < 65536 {
		return fmt.Errorf("max_request_bytes must be at least 65536 (one event)")
	}
	if c.DelayedMaxDelay < 0 || c.DelayedMaxDelay > 365*86400 {
		return fmt.Errorf("delayed_events_max_delay must be 0 (off) to 31536000 seconds")
	}
	if c.MaxUploadBytes < 1 || c.MediaQuotaBytes < 0 {
		return fmt.Errorf("max_upload_bytes must be positive and media_quota_bytes not negative")
	}
	if c.MaxImagePixels < 1 || c.ThumbnailMemory < 1<<20 {
		return fmt.Errorf("max_image_pixels must be positive and thumbnail_memory_bytes at least 1048576")
	}
	if c.Federation != FederationOff && (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("tls_cert and tls_key go together: set both or neither")
	}
	if c.Federation == FederationInternet && c.TLSCert == "" {
		return fmt.Errorf("federation = internet needs tls_cert and tls_key: a certificate other servers trust (from a CA such as Let's Encrypt); " +
			"federation = lan works without one")
	}
	if _, err := parseServerTable(c.FederationServers); err != nil {
		return err
	}
	if _, err := parseAllowNetworks(c.FedAllowNetworks); err != nil {
		return err
	}
	if _, err := parseNotaries(c.TrustedNotaries); err != nil {
		return err
	}
	if err := c.validateCalls(); err != nil {
		return err
	}
	if err := c.validateTURN(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level must be debug, info, warn or error")
	}
	return nil
}

// WriteDefaults prints the default config as a commented file.
func WriteDefaults(w *bufio.Writer) {
	d := Defaults()
	fmt.Fprintln(w, "# Hearth configuration. Every key can also be given as a flag (--server-name)")
	fmt.Fprintln(w, "# or an environment variable (HEARTH_SERVER_NAME); flags win over the")
	fmt.Fprintln(w, "# environment, which wins over this file. Values below are the defaults.")
	for _, f := range fields(&d) {
		fmt.Fprintf(w, "\n# %s\n%s = %v\n", f.help, f.key, f.v.Interface())
	}
	w.Flush()
}

// Federation modes (config key federation).
const (
	FederationOff      = "off"
	FederationLAN      = "lan"      // loopback and this machine's own networks; self-signed certificate by default
	FederationInternet = "internet" // anyone; a CA certificate is required
)

// legacyFederation is the mode of a config that does not name one. Before
// the federation key existed, an empty federation_listen meant off and a
// set one meant federation open to anyone with a CA certificate: such a
// config keeps that behaviour (internet). Every other config gets the
// default, lan, so a fresh install federates with people nearby.
func legacyFederation(federationListen string) string {
	if federationListen != "" {
		return FederationInternet
	}
	return FederationLAN
}

// defaultFederationListen is the federation address when
// federation_listen is empty: the Server-Server API's standard port on
// every interface (lan mode filters who may connect, lanlisten.go).
const defaultFederationListen = ":8448"

// fedListenAddr is the address the federation listener binds.
func (c *Config) fedListenAddr() string {
	if c.FederationListen != "" {
		return c.FederationListen
	}
	return defaultFederationListen
}

// lanServerName is the default server name of a new install: the machine
// name, "-", six base32 characters of the SHA-256 of the signing key's
// public half, and ".local". Two machines that share a host name still
// get different names (30 bits: a collision on one LAN is about one in a
// billion), the name stays the same for the data dir because it is
// recorded at first start, and .local is reserved for link-local names
// (RFC 6762), so it never resolves on the internet: peers find it through
// LAN discovery. The suffix comes from the key rather than from chance so
// the name itself commits to the key it was made with.
func lanServerName(machine string, pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	suffix := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:6])
	// A DNS label holds at most 63 characters (RFC 1035 §2.3.4).
	if max := 63 - len(suffix) - 1; len(machine) > max {
		machine = strings.TrimRight(machine[:max], "-")
	}
	return machine + "-" + suffix + ".local"
}
