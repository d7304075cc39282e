package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/internal/store"
)

// mediaNet is a few federation services, each with its own bbolt file,
// content repository, real signing key and key server, behind real TLS
// (httptest); matrix://<name> requests go to that name's server.
type mediaNet struct {
	mu    sync.Mutex
	nodes map[string]*mediaNode
}

type mediaNode struct {
	name   spec.ServerName
	svc    *Service
	repo   *media.Repo
	srv    *httptest.Server
	key    ed25519.PrivateKey
	client fclient.FederationClient
	net    *mediaNet
}

func (n *mediaNet) RoundTrip(req *http.Request) (*http.Response, error) {
	n.mu.Lock()
	nd := n.nodes[req.URL.Host]
	n.mu.Unlock()
	if nd == nil {
		return nil, errors.New("no such test server: " + req.URL.Host)
	}
	u, _ := url.Parse(nd.srv.URL)
	out := req.Clone(req.Context())
	out.Host = req.URL.Host
	out.URL.Scheme, out.URL.Host = "https", u.Host
	return nd.srv.Client().Transport.RoundTrip(out)
}

func (n *mediaNet) add(t *testing.T, name string, maxUpload int64) *mediaNode {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	repo, err := media.New(db, media.Config{Dir: filepath.Join(dir, "media"), ServerName: name, MaxUploadBytes: maxUpload})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	sn, kid := spec.ServerName(name), gomatrixserverlib.KeyID("ed25519:m")
	keys := serverkeys.New(db, serverkeys.Identity{ServerName: sn, KeyID: kid, Key: key}, fclient.NewClient(fclient.WithTransport(n)), nil)
	client := fclient.NewFederationClient([]*fclient.SigningIdentity{{ServerName: sn, KeyID: kid, PrivateKey: key}},
		fclient.WithTransport(n))
	svc := New(Config{ServerName: sn, KeyID: kid, Key: key, DB: db, KeyRing: keys.KeyRing(), Client: client, Media: repo})
	keys.Register(svc.Mux())
	repo.SetFetcher(svc)
	srv := httptest.NewTLSServer(svc.Handler())
	t.Cleanup(srv.Close)
	nd := &mediaNode{name: sn, svc: svc, repo: repo, srv: srv, key: key, client: client, net: n}
	n.mu.Lock()
	n.nodes[name] = nd
	n.mu.Unlock()
	return nd
}

func newMediaNet(t *testing.T) (a, b *mediaNode) {
	n := &mediaNet{nodes: map[string]*mediaNode{}}
	return n.add(t, "a.test", 1<<20), n.add(t, "b.test", 4096)
}

func testPNG(t *testing.T) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 80, 60))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Status != status || me.Code != code {
		t.Fatalf("error %v, want %d %s", err, status, code)
	}
}

// TestMediaDownloadOverFederation: b fetches a's upload with a signed
// request and gets the bytes, type and (non-ASCII) filename back from the
// multipart answer; then b's repository caches it for b's clients.
func TestMediaDownloadOverFederation(t *testing.T) {
	a, b := newMediaNet(t)
	ctx := context.Background()
	pic := testPNG(t)
	id, err := a.repo.Store(ctx, "@alice:a.test", media.Upload{Body: bytes.NewReader(pic), ContentLength: -1,
		ContentType: "image/png", Filename: "grüße.png"})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := b.svc.Download(ctx, "a.test", id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rf.Body)
	rf.Body.Close()
	if err != nil || !bytes.Equal(got, pic) {
		t.Fatalf("downloaded %d bytes (%v), want %d", len(got), err, len(pic))
	}
	if rf.ContentType != "image/png" || rf.Filename != "grüße.png" {
		t.Fatalf("type %q filename %q", rf.ContentType, rf.Filename)
	}

	rec, err := b.repo.Remote(ctx, "a.test", id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Origin != "a.test" || rec.Size != int64(len(pic)) || rec.Filename != "grüße.png" {
		t.Fatalf("cached record %+v", rec)
	}

	_, err = b.svc.Download(ctx, "a.test", "NoSuchMedia")
	wantErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
	_, err = b.svc.Download(ctx, "b.test", id)
	wantErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
}

// TestMediaCachedCopyNotServed: a copy b cached of a's media is not b's
// media: a request that names its cache key is 404, and a request
// without a signature is 401.
func TestMediaCachedCopyNotServed(t *testing.T) {
	a, b := newMediaNet(t)
	ctx := context.Background()
	id, err := a.repo.Store(ctx, "@alice:a.test", media.Upload{Body: strings.NewReader("hello"), ContentLength: 5, ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.repo.Remote(ctx, "a.test", id); err != nil {
		t.Fatal(err)
	}
	// The mux unescapes %2F inside the {mediaID} segment: this names b's
	// cache key "a.test/<id>".
	_, err = a.svc.Download(ctx, "b.test", "a.test/"+id)
	wantErr(t, err, http.StatusNotFound, "M_NOT_FOUND")

	res, err := b.srv.Client().Get(b.srv.URL + "/_matrix/federation/v1/media/download/" + id)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %d, want 401", res.StatusCode)
	}
}

// TestMediaThumbnailOverFederation asks a for a thumbnail with a signed
// request built by hand (fclient has no thumbnail call) and reads the two
// parts.
func TestMediaThumbnailOverFederation(t *testing.T) {
	a, b := newMediaNet(t)
	ctx := context.Background()
	id, err := a.repo.Store(ctx, "@alice:a.test", media.Upload{Body: bytes.NewReader(testPNG(t)), ContentLength: -1, ContentType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(query string) *http.Response {
		fr := fclient.NewFederationRequest("GET", b.name, a.name, "/_matrix/federation/v1/media/thumbnail/"+id+query)
		if err := fr.Sign(b.name, "ed25519:m", b.key); err != nil {
			t.Fatal(err)
		}
		req, err := fr.HTTPRequest()
		if err != nil {
			t.Fatal(err)
		}
		res, err := fclient.NewClient(fclient.WithTransport(b.net)).DoHTTPRequest(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	res := get("?width=32&height=32&method=crop")
	if res.StatusCode != 200 {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("thumbnail: %d %s", res.StatusCode, body)
	}
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q", res.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(res.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil || meta.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("metadata part %v %v", meta, err)
	}
	if m, _ := io.ReadAll(meta); string(m) != "{}" {
		t.Fatalf("metadata %q", m)
	}
	part, err := mr.NextPart()
	if err != nil || part.Header.Get("Content-Type") != "image/png" || part.Header.Get("Content-Disposition") != "inline" {
		t.Fatalf("media part %v %v", part.Header, err)
	}
	cfg, err := png.DecodeConfig(part)
	if err != nil || cfg.Width != 32 || cfg.Height != 32 {
		t.Fatalf("thumbnail %+v %v", cfg, err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("a third part: %v", err)
	}

	if res := get("?width=32"); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("thumbnail without height: %d", res.StatusCode)
	}
}

// TestMediaRemoteTooLarge: media over b's limit is 502 M_TOO_LARGE and
// leaves no record behind.
func TestMediaRemoteTooLarge(t *testing.T) {
	a, b := newMediaNet(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 10_000)
	id, err := a.repo.Store(ctx, "@alice:a.test", media.Upload{Body: bytes.NewReader(big), ContentLength: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.repo.Remote(ctx, "a.test", id)
	wantErr(t, err, http.StatusBadGateway, "M_TOO_LARGE")
	_, err = b.repo.RemoteRecord("a.test", id)
	wantErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
}
