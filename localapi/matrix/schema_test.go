package matrix_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The Client-Server API's OpenAPI 3.1 files are the reference for response
// shapes. Their schemas are JSON Schema 2020-12 with relative $refs into
// definitions/ and ../../event-schemas, so they are compiled with a JSON
// Schema compiler whose loader reads YAML; the OpenAPI part (path, method,
// status, content type) is walked here.

// specDir is the matrix-spec checkout next to the repository.
const specDir = "../../../shared/matrix-spec"

// spec is the loaded API description; it is built once per test binary.
type spec struct {
	ops      []*specOp
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
	errorURL string // definitions/errors/error.yaml
}

// specOp is one operation: a method on a path template of one file.
type specOp struct {
	file      string // absolute path of the YAML file
	template  string // full path, basePath included, e.g. /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
	method    string
	re        *regexp.Regexp
	literal   int            // literal characters in the template, to prefer the most specific match
	responses map[string]any // status → response object (maybe a $ref)
	doc       map[string]any
	pointer   string // JSON pointer of the operation in its file
}

var (
	loadSpecOnce sync.Once
	loadedSpec   *spec
	loadSpecErr  error
)

// loadSpec returns the spec. Without the checkout the test fails and says
// what is missing, unless HEARTH_SKIP_SPEC=1 asks to skip it: a test that
// skips silently proves nothing while looking green.
func loadSpec(t testing.TB) *spec {
	t.Helper()
	if _, err := os.Stat(filepath.Join(specDir, "data", "api", "client-server")); errors.Is(err, os.ErrNotExist) {
		msg := fmt.Sprintf("the Matrix spec is not at %s (relative to localapi/matrix): the response-schema and endpoint-coverage tests check against its OpenAPI files. Put a checkout of github.com/matrix-org/matrix-spec there (the repository's CI has it in ../shared), or set HEARTH_SKIP_SPEC=1 to skip these tests", specDir)
		if os.Getenv("HEARTH_SKIP_SPEC") == "1" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	loadSpecOnce.Do(func() { loadedSpec, loadSpecErr = readSpec() })
	if loadSpecErr != nil {
		t.Fatalf("load spec: %v", loadSpecErr)
	}
	return loadedSpec
}

func readSpec() (*spec, error) {
	dir, err := filepath.Abs(filepath.Join(specDir, "data", "api", "client-server"))
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no API files in %s (%v)", dir, err)
	}
	s := &spec{schemas: map[string]*jsonschema.Schema{}}
	for _, f := range files {
		v, err := readYAML(f)
		if err != nil {
			return nil, err
		}
		doc, _ := v.(map[string]any)
		base := basePath(doc)
		paths, _ := doc["paths"].(map[string]any)
		for p, item := range paths {
			ops, _ := item.(map[string]any)
			for m, op := range ops {
				opm, ok := op.(map[string]any)
				if !ok || m == "parameters" {
					continue
				}
				responses, _ := opm["responses"].(map[string]any)
				full := base + p
				re, lit := templateRegexp(full)
				s.ops = append(s.ops, &specOp{file: f, template: full, method: strings.ToUpper(m), re: re, literal: lit,
					responses: responses, doc: doc, pointer: "/paths/" + escapePointer(p) + "/" + m})
			}
		}
	}
	sort.Slice(s.ops, func(i, j int) bool { return s.ops[i].literal > s.ops[j].literal })

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(yamlLoader{})
	c.AssertFormat()
	for _, f := range matrixFormats() {
		c.RegisterFormat(f)
	}
	s.compiler = c
	s.errorURL = fileURL(filepath.Join(dir, "definitions", "errors", "error.yaml"))
	return s, nil
}

// basePath is the default of the file's servers[0] basePath variable.
func basePath(doc map[string]any) string {
	servers, _ := doc["servers"].([]any)
	if len(servers) == 0 {
		return ""
	}
	srv, _ := servers[0].(map[string]any)
	vars, _ := srv["variables"].(map[string]any)
	bp, _ := vars["basePath"].(map[string]any)
	d, _ := bp["default"].(string)
	return d
}

// templateRegexp matches request paths (unescaped) against a template. A
// trailing {stateKey} may be empty or left off with its slash, as the spec
// allows for the empty state key.
func templateRegexp(tmpl string) (*regexp.Regexp, int) {
	var sb strings.Builder
	sb.WriteString("^")
	lit := 0
	rest := tmpl
	for {
		i := strings.Index(rest, "{")
		if i < 0 {
			sb.WriteString(regexp.QuoteMeta(rest))
			lit += len(rest)
			break
		}
		j := strings.Index(rest[i:], "}") + i
		name := rest[i+1 : j]
		lit += i
		if name == "stateKey" && j == len(rest)-1 {
			sb.WriteString(regexp.QuoteMeta(strings.TrimSuffix(rest[:i], "/")))
			sb.WriteString("(?:/.*)?")
		} else {
			sb.WriteString(regexp.QuoteMeta(rest[:i]))
			sb.WriteString("[^/]+")
		}
		rest = rest[j+1:]
	}
	sb.WriteString("$")
	return regexp.MustCompile(sb.String()), lit
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func fileURL(path string) string { return (&url.URL{Scheme: "file", Path: path}).String() }

// find returns the operation serving method on the request path.
func (s *spec) find(method, path string) *specOp {
	for _, op := range s.ops {
		if op.method == method && op.re.MatchString(path) {
			return op
		}
	}
	return nil
}

// responseSchema returns the compiled schema the spec gives op's status,
// or nil with the reason if the spec lists no JSON body for it.
func (s *spec) responseSchema(op *specOp, status int) (*jsonschema.Schema, string, error) {
	code := strconv.Itoa(status)
	resp, ok := op.responses[code]
	if !ok {
		code = code[:1] + "XX"
		if resp, ok = op.responses[code]; !ok {
			code = "default"
			if resp, ok = op.responses[code]; !ok {
				return nil, "status not listed", nil
			}
		}
	}
	ptr := op.pointer + "/responses/" + escapePointer(code)
	file := op.file
	if m, _ := resp.(map[string]any); m != nil {
		if ref, _ := m["$ref"].(string); ref != "" {
			f, frag, _ := strings.Cut(ref, "#")
			if f != "" {
				file = filepath.Join(filepath.Dir(op.file), f)
			}
			ptr = frag
			doc, err := readYAML(file)
			if err != nil {
				return nil, "", err
			}
			resp, err = lookupPointer(doc, frag)
			if err != nil {
				return nil, "", err
			}
		}
	}
	content, _ := resp.(map[string]any)["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	if _, ok := media["schema"]; !ok {
		return nil, "no application/json schema", nil
	}
	sch, err := s.compile(fileURL(file) + "#" + ptr + "/content/application~1json/schema")
	return sch, "", err
}

func (s *spec) compile(loc string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[loc]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", loc, err)
	}
	s.schemas[loc] = sch
	return sch, nil
}

// validate checks a response against the spec: the operation must exist,
// a 2xx must be a status the operation lists, and the body must match the
// schema for that status. Error statuses the operation does not list (the
// spec's general rules allow e.g. 401 M_MISSING_TOKEN anywhere) must match
// the standard error schema. Every error (but a UIA challenge, which has
// its own schema) must also be a standard error object.
func (s *spec) validate(method, path string, status int, body []byte) error {
	op := s.find(method, path)
	if op == nil {
		return fmt.Errorf("%s %s: no operation in the spec", method, path)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: body is not JSON: %v", method, path, err)
	}
	sch, why, err := s.responseSchema(op, status)
	if err != nil {
		return err
	}
	if sch == nil {
		if status < 400 {
			return fmt.Errorf("%s %s (%s): status %d: %s", method, path, op.template, status, why)
		}
	} else if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%s %s (%s) status %d: %v", method, path, op.template, status, err)
	}
	uia := status == 401 && hasKey(inst, "flows")
	if status >= 400 && !uia {
		esch, err := s.compile(s.errorURL)
		if err != nil {
			return err
		}
		if err := esch.Validate(inst); err != nil {
			return fmt.Errorf("%s %s status %d: not a standard error: %v", method, path, status, err)
		}
	}
	return nil
}

func hasKey(v any, k string) bool {
	m, ok := v.(map[string]any)
	if ok {
		_, ok = m[k]
	}
	return ok
}

// check validates r against the spec, failing t if it does not match.
func (s *spec) check(t testing.TB, r *response) {
	t.Helper()
	if err := s.validate(r.Method, r.Path, r.Status, r.Body); err != nil {
		t.Errorf("spec violation: %v\nbody: %.1000s", err, r.Body)
	}
}

// checkSchema validates body against a schema file named relative to the
// client-server API directory.
func (s *spec) checkSchema(t testing.TB, rel string, body []byte) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join(specDir, "data", "api", "client-server"))
	sch, err := s.compile(fileURL(filepath.Join(dir, rel)))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("spec violation (%s): %v\nbody: %.1000s", rel, err, body)
	}
}

// yamlLoader loads file: URLs of YAML (or JSON, a subset) for the compiler.
type yamlLoader struct{}

func (yamlLoader) Load(u string) (any, error) {
	p, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if p.Scheme != "file" {
		return nil, fmt.Errorf("refusing to load %s: only file URLs", u)
	}
	return readYAML(p.Path)
}

var yamlCache sync.Map // path → decoded document

// readYAML decodes a YAML file into the values encoding/json would give
// (with json.Number numbers), which is what the compiler expects.
func readYAML(path string) (any, error) {
	if v, ok := yamlCache.Load(path); ok {
		return v, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(jsonCompatible(v))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	yamlCache.Store(path, doc)
	return doc, nil
}

// jsonCompatible turns YAML maps with non-string keys into string-keyed ones.
func jsonCompatible(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonCompatible(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonCompatible(e)
		}
		return x
	}
	return v
}

func lookupPointer(doc any, ptr string) (any, error) {
	v := doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("pointer %s: %q is not in an object", ptr, tok)
		}
		if v, ok = m[tok]; !ok {
			return nil, fmt.Errorf("pointer %s: no %q", ptr, tok)
		}
	}
	return v, nil
}

// matrixFormats checks the spec's own formats (Appendices §"Identifier
// grammar"), loosely: the sigil and, where the grammar has one, the server
// part. Room IDs have no server part from room version 12 on.
func matrixFormats() []*jsonschema.Format {
	str := func(name string, ok func(string) bool) *jsonschema.Format {
		return &jsonschema.Format{Name: name, Validate: func(v any) error {
			s, isStr := v.(string)
			if !isStr || ok(s) {
				return nil
			}
			return fmt.Errorf("%q is not a valid %s", s, name)
		}}
	}
	withServer := func(sigil string) func(string) bool {
		return func(s string) bool {
			local, server, ok := strings.Cut(s, ":")
			return ok && strings.HasPrefix(local, sigil) && len(local) > 1 && server != ""
		}
	}
	return []*jsonschema.Format{
		str("mx-user-id", withServer("@")),
		str("mx-room-alias", withServer("#")),
		str("mx-room-id", func(s string) bool { return strings.HasPrefix(s, "!") && len(s) > 1 }),
		str("mx-event-id", func(s string) bool { return strings.HasPrefix(s, "$") && len(s) > 1 }),
		str("mx-server-name", func(s string) bool { return s != "" && !strings.ContainsAny(s, "/@!#$ ") }),
		str("mx-mxc-uri", func(s string) bool { return strings.HasPrefix(s, "mxc://") }),
	}
}

// specChecker validates every response a scenario gets.
type specChecker struct {
	*testServer
	spec *spec
}

func (c specChecker) call(t *testing.T, method, path, token string, body any) *response {
	t.Helper()
	r := c.do(t, method, path, token, body)
	c.spec.check(t, r)
	return r
}

// TestSpecSchemas drives the main endpoints through a realistic scenario
// and validates every response, success and error, against the spec.
func TestSpecSchemas(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	const v3 = "/_matrix/client/v3"

	c.call(t, "GET", "/_matrix/client/versions", "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/login", "", nil).wantStatus(t, 200)

	// Registration: the UIA challenge, success, and the refusals.
	c.call(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw"}).wantStatus(t, 401)
	alice := ts.register(t, "alice")
	bob := ts.register(t, "bob")
	c.call(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw",
		"auth": map[string]any{"type": "m.login.dummy"}}).wantError(t, 400, "M_USER_IN_USE")
	c.call(t, "POST", v3+"/register", "", map[string]any{"username": "Not Valid!", "password": "pw",
		"auth": map[string]any{"type": "m.login.dummy"}}).wantError(t, 400, "M_INVALID_USERNAME")
	c.call(t, "POST", v3+"/register?kind=guest", "", map[string]any{}).wantError(t, 403, "M_GUEST_ACCESS_FORBIDDEN")
	c.call(t, "GET", v3+"/register/available?username=carol", "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/register/available?username=alice", "", nil).wantError(t, 400, "M_USER_IN_USE")
	c.call(t, "GET", v3+"/register/available?username=A%20B", "", nil).wantError(t, 400, "M_INVALID_USERNAME")

	// Login and the token.
	login := c.call(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": alice.Password})
	login.wantStatus(t, 200)
	c.call(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "wrong"}).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "POST", v3+"/login", "", map[string]any{"type": "m.login.bogus"}).wantStatus(t, 400)
	c.call(t, "GET", v3+"/account/whoami", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/account/whoami", "forged", nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
	c.call(t, "GET", v3+"/account/whoami", "", nil).wantError(t, 401, "M_MISSING_TOKEN")
	c.call(t, "GET", v3+"/capabilities", alice.Token, nil).wantStatus(t, 200)

	// Rooms.
	roomID := c.call(t, "POST", v3+"/createRoom", alice.Token, map[string]any{
		"name": "Spec room", "topic": "schemas", "preset": "public_chat", "room_alias_name": "spec",
	}).str(t, "room_id")
	c.call(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"room_version": "999"}).
		wantError(t, 400, "M_UNSUPPORTED_ROOM_VERSION")
	rid := url.PathEscape(roomID)
	eventID := c.call(t, "PUT", v3+"/rooms/"+rid+"/send/m.room.message/txn1", alice.Token,
		map[string]any{"msgtype": "m.text", "body": "hello"}).str(t, "event_id")
	c.call(t, "PUT", v3+"/rooms/"+rid+"/state/m.room.topic/", alice.Token, map[string]any{"topic": "new"}).wantStatus(t, 200)
	c.call(t, "PUT", v3+"/rooms/"+rid+"/state/m.room.topic", alice.Token, map[string]any{"topic": "newer"}).wantStatus(t, 200)
	c.call(t, "PUT", v3+"/rooms/"+rid+"/state/m.room.power_levels", bob.Token, map[string]any{}).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", v3+"/rooms/"+rid+"/state", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/rooms/"+rid+"/state/m.room.name/", alice.Token, nil).wantStatus(t, 200)
	// With format=event the spec's schema is oneOf{any object, state
	// event}, which no event can satisfy (it matches both), so the event
	// is checked against the state event schema directly.
	ev := ts.do(t, "GET", v3+"/rooms/"+rid+"/state/m.room.name?format=event", alice.Token, nil)
	ev.wantStatus(t, 200)
	sp.checkSchema(t, "../../event-schemas/schema/core-event-schema/state_event.yaml", ev.Body)
	c.call(t, "GET", v3+"/rooms/"+rid+"/state/m.room.avatar/", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", v3+"/rooms/"+rid+"/state", bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", v3+"/rooms/"+rid+"/event/"+url.PathEscape(eventID), alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/rooms/"+rid+"/event/$nope", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", v3+"/rooms/"+rid+"/members", alice.Token, nil).wantStatus(t, 200)
	// joined_members gives null for an unset avatar (Synapse does, and
	// Complement needs the key), which the schema has no room for: check
	// the shape with an avatar set.
	c.call(t, "PUT", v3+"/profile/"+url.PathEscape(alice.ID)+"/avatar_url", alice.Token,
		map[string]any{"avatar_url": "mxc://test.local/avatar"}).wantStatus(t, 200)
	c.call(t, "GET", v3+"/rooms/"+rid+"/joined_members", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/rooms/"+rid+"/members", bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	msgs := c.call(t, "GET", v3+"/rooms/"+rid+"/messages?dir=b&limit=3", alice.Token, nil)
	msgs.wantStatus(t, 200)
	if end, ok := msgs.json(t)["end"].(string); ok {
		c.call(t, "GET", v3+"/rooms/"+rid+"/messages?dir=b&limit=3&from="+url.QueryEscape(end), alice.Token, nil).wantStatus(t, 200)
	}
	c.call(t, "GET", v3+"/rooms/"+rid+"/messages?dir=f", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/rooms/"+rid+"/messages?dir=b", bob.Token, nil).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", v3+"/rooms/"+rid+"/context/"+url.PathEscape(eventID)+"?limit=2", alice.Token, nil).wantStatus(t, 200)

	// Joining, by ID and by alias, and a room that does not exist.
	c.call(t, "POST", v3+"/join/"+url.PathEscape("#spec:"+testServerName), bob.Token, map[string]any{}).wantStatus(t, 200)
	c.call(t, "POST", v3+"/rooms/"+rid+"/join", bob.Token, map[string]any{}).wantStatus(t, 200)
	r := c.call(t, "POST", v3+"/rooms/"+url.PathEscape("!nope:"+testServerName)+"/join", bob.Token, map[string]any{})
	if r.Status != 403 && r.Status != 404 {
		t.Errorf("join unknown room: status %d, want 403 or 404", r.Status)
	}
	c.call(t, "GET", v3+"/joined_rooms", bob.Token, nil).wantStatus(t, 200)
	ts.send(t, bob, roomID, "b1", "hi alice")

	// Sync: initial, then incremental after a message.
	s1 := c.call(t, "GET", v3+"/sync", alice.Token, nil)
	s1.wantStatus(t, 200)
	ts.send(t, bob, roomID, "b2", "again")
	c.call(t, "GET", v3+"/sync?since="+url.QueryEscape(s1.str(t, "next_batch")), alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/sync?full_state=true", bob.Token, nil).wantStatus(t, 200)

	// Profiles.
	c.call(t, "PUT", v3+"/profile/"+url.PathEscape(alice.ID)+"/displayname", alice.Token, map[string]any{"displayname": "Alice"}).wantStatus(t, 200)
	c.call(t, "PUT", v3+"/profile/"+url.PathEscape(alice.ID)+"/displayname", bob.Token, map[string]any{"displayname": "Eve"}).wantError(t, 403, "M_FORBIDDEN")
	c.call(t, "GET", v3+"/profile/"+url.PathEscape(alice.ID), "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/profile/"+url.PathEscape(alice.ID)+"/displayname", "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/profile/"+url.PathEscape("@nobody:"+testServerName), "", nil).wantError(t, 404, "M_NOT_FOUND")

	// Filters.
	uid := url.PathEscape(alice.ID)
	fid := c.call(t, "POST", v3+"/user/"+uid+"/filter", alice.Token, map[string]any{
		"room": map[string]any{"timeline": map[string]any{"limit": 5}}}).str(t, "filter_id")
	c.call(t, "GET", v3+"/user/"+uid+"/filter/"+url.PathEscape(fid), alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/user/"+uid+"/filter/99999", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", v3+"/sync?filter="+url.QueryEscape(fid), alice.Token, nil).wantStatus(t, 200)

	// Devices.
	c.call(t, "GET", v3+"/devices", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/devices/"+url.PathEscape(alice.DeviceID), alice.Token, nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/devices/NOPE", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "PUT", v3+"/devices/"+url.PathEscape(alice.DeviceID), alice.Token, map[string]any{"display_name": "laptop"}).wantStatus(t, 200)
	c.call(t, "DELETE", v3+"/devices/"+url.PathEscape(login.str(t, "device_id")), alice.Token, map[string]any{}).wantStatus(t, 401)

	// Directory.
	alias := url.PathEscape("#other:" + testServerName)
	c.call(t, "PUT", v3+"/directory/room/"+alias, alice.Token, map[string]any{"room_id": roomID}).wantStatus(t, 200)
	c.call(t, "PUT", v3+"/directory/room/"+alias, alice.Token, map[string]any{"room_id": roomID}).wantStatus(t, 409)
	c.call(t, "GET", v3+"/directory/room/"+alias, "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/directory/room/"+url.PathEscape("#missing:"+testServerName), "", nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", v3+"/rooms/"+rid+"/aliases", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "DELETE", v3+"/directory/room/"+alias, alice.Token, nil).wantStatus(t, 200)
	c.call(t, "DELETE", v3+"/directory/room/"+alias, alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "PUT", v3+"/directory/list/room/"+rid, alice.Token, map[string]any{"visibility": "public"}).wantStatus(t, 200)
	c.call(t, "GET", v3+"/directory/list/room/"+rid, "", nil).wantStatus(t, 200)
	c.call(t, "GET", v3+"/directory/list/room/"+url.PathEscape("!nope:"+testServerName), "", nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", v3+"/publicRooms?limit=5", "", nil).wantStatus(t, 200)
	c.call(t, "POST", v3+"/publicRooms", alice.Token, map[string]any{"limit": 5, "filter": map[string]any{"generic_search_term": "spec"}}).wantStatus(t, 200)

	// Leaving and logging out.
	c.call(t, "POST", v3+"/rooms/"+rid+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	c.call(t, "GET", v3+"/sync", bob.Token, nil).wantStatus(t, 200)
	c.call(t, "POST", v3+"/rooms/"+rid+"/forget", bob.Token, map[string]any{}).wantStatus(t, 200)
	c.call(t, "POST", v3+"/logout", login.str(t, "access_token"), map[string]any{}).wantStatus(t, 200)
	c.call(t, "GET", v3+"/account/whoami", login.str(t, "access_token"), nil).wantError(t, 401, "M_UNKNOWN_TOKEN")
}

// TestSpecValidatorCatchesViolations proves the validation above is real:
// real responses pass, and copies with one field broken fail.
func TestSpecValidatorCatchesViolations(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, map[string]any{"name": "x"})
	ts.send(t, alice, roomID, "t1", "hello")
	const v3 = "/_matrix/client/v3"
	rid := url.PathEscape(roomID)

	cases := []struct {
		name   string
		method string
		path   string
		token  string
		status int
		break_ func(m map[string]any)
	}{
		{"versions without versions", "GET", "/_matrix/client/versions", "", 200,
			func(m map[string]any) { delete(m, "versions") }},
		{"versions as string", "GET", "/_matrix/client/versions", "", 200,
			func(m map[string]any) { m["versions"] = "v1.16" }},
		{"whoami user_id not a user ID", "GET", v3 + "/account/whoami", alice.Token, 200,
			func(m map[string]any) { m["user_id"] = "alice" }},
		{"sync next_batch number", "GET", v3 + "/sync", alice.Token, 200,
			func(m map[string]any) { m["next_batch"] = 7 }},
		{"sync timeline event without sender", "GET", v3 + "/sync", alice.Token, 200,
			func(m map[string]any) {
				join := m["rooms"].(map[string]any)["join"].(map[string]any)
				for _, jr := range join {
					evs := jr.(map[string]any)["timeline"].(map[string]any)["events"].([]any)
					delete(evs[len(evs)-1].(map[string]any), "sender")
				}
			}},
		{"messages chunk missing", "GET", v3 + "/rooms/" + rid + "/messages?dir=b", alice.Token, 200,
			func(m map[string]any) { delete(m, "chunk") }},
		{"messages event origin_server_ts string", "GET", v3 + "/rooms/" + rid + "/messages?dir=b", alice.Token, 200,
			func(m map[string]any) {
				m["chunk"].([]any)[0].(map[string]any)["origin_server_ts"] = "yesterday"
			}},
		{"state event content missing", "GET", v3 + "/rooms/" + rid + "/state", alice.Token, 200,
			nil}, // top level is an array: broken below
		{"error without errcode", "GET", v3 + "/account/whoami", "forged", 401,
			func(m map[string]any) { delete(m, "errcode") }},
		{"joined_rooms not an array", "GET", v3 + "/joined_rooms", alice.Token, 200,
			func(m map[string]any) { m["joined_rooms"] = map[string]any{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(t, tc.method, tc.path, tc.token, nil)
			r.wantStatus(t, tc.status)
			if err := sp.validate(r.Method, r.Path, r.Status, r.Body); err != nil {
				t.Fatalf("the real response should pass: %v", err)
			}
			var v any
			if err := json.Unmarshal(r.Body, &v); err != nil {
				t.Fatal(err)
			}
			if tc.break_ != nil {
				tc.break_(v.(map[string]any))
			} else {
				delete(v.([]any)[0].(map[string]any), "content")
			}
			broken, _ := json.Marshal(v)
			err := sp.validate(r.Method, r.Path, r.Status, broken)
			if err == nil {
				t.Fatalf("validation accepted a broken response: %s", broken)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}

	t.Run("unknown operation", func(t *testing.T) {
		if err := sp.validate("GET", "/_matrix/client/v3/not_an_endpoint", 200, []byte("{}")); err == nil {
			t.Fatal("an endpoint the spec lacks was accepted")
		}
	})
	t.Run("unlisted success status", func(t *testing.T) {
		if err := sp.validate("GET", "/_matrix/client/versions", 201, []byte(`{"versions":[]}`)); err == nil {
			t.Fatal("a status the spec does not list was accepted")
		}
	})
}
