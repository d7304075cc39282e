package matrix_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

const (
	mediaV1     = "/_matrix/client/v1/media"
	mediaUpload = "/_matrix/media/v3/upload"
)

// newMediaServer is a test server with a content repository under its
// temp dir, and a request body limit smaller than the upload limit so
// that tests see uploads get their own.
func newMediaServer(t *testing.T, cfg media.Config) (*testServer, string) {
	t.Helper()
	ts := newTestServer(t, matrix.Config{Registration: matrix.RegistrationOpen, MaxBodyBytes: 64 << 10})
	cfg.Dir = filepath.Join(t.TempDir(), "media")
	cfg.ServerName = testServerName
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 1 << 20
	}
	repo, err := media.New(ts.DB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.API.SetMedia(repo)
	return ts, cfg.Dir
}

// mediaFiles counts the files under the media dir (blobs, temp files and
// thumbnails alike).
func mediaFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// uploadMedia posts body with a content type and returns the mxc URI's
// server/mediaId part.
func (ts *testServer) uploadMedia(t *testing.T, u *testUser, contentType, filename string, body []byte) string {
	t.Helper()
	p := mediaUpload
	if filename != "" {
		p += "?filename=" + filename
	}
	req := ts.newRequest(t, "POST", p, u.Token, body)
	req.Header.Set("Content-Type", contentType)
	r := ts.doRequest(t, req)
	r.wantStatus(t, 200)
	loadSpec(t).check(t, r)
	uri := r.str(t, "content_uri")
	rest, ok := strings.CutPrefix(uri, "mxc://")
	if !ok {
		t.Fatalf("content_uri %q", uri)
	}
	return rest
}

func wantErrcode(t *testing.T, r *response, status int, code string) {
	t.Helper()
	r.wantStatus(t, status)
	if got := r.str(t, "errcode"); got != code {
		t.Fatalf("%s %s: errcode %s, want %s", r.Method, r.Path, got, code)
	}
}

func TestMediaUploadDownload(t *testing.T) {
	ts, _ := newMediaServer(t, media.Config{})
	u := ts.register(t, "alice")
	// Larger than the API's 64 KiB body limit: uploads have their own.
	body := bytes.Repeat([]byte("hearth "), 20000)
	mxc := ts.uploadMedia(t, u, "text/plain", "notes.txt", body)

	r := ts.do(t, "GET", mediaV1+"/download/"+mxc, u.Token, nil)
	r.wantStatus(t, 200)
	if !bytes.Equal(r.Body, body) {
		t.Fatalf("downloaded %d bytes, uploaded %d", len(r.Body), len(body))
	}
	for k, want := range map[string]string{
		"Content-Type":                 "text/plain",
		"Content-Disposition":          "inline; filename=notes.txt",
		"Content-Security-Policy":      "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';",
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	// The name in the path overrides the stored one.
	r = ts.do(t, "GET", mediaV1+"/download/"+mxc+"/other.txt", u.Token, nil)
	r.wantStatus(t, 200)
	if got := r.Header.Get("Content-Disposition"); got != "inline; filename=other.txt" {
		t.Errorf("override: %q", got)
	}
	// Unsafe types are attachments.
	mxc = ts.uploadMedia(t, u, "text/html", "", []byte("<script>alert(1)</script>"))
	r = ts.do(t, "GET", mediaV1+"/download/"+mxc, u.Token, nil)
	r.wantStatus(t, 200)
	if got := r.Header.Get("Content-Disposition"); got != "attachment" {
		t.Errorf("text/html disposition %q", got)
	}
	// Authenticated media needs a token.
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/download/"+mxc, "", nil), 401, "M_MISSING_TOKEN")
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/download/"+testServerName+"/nosuchmedia", u.Token, nil), 404, "M_NOT_FOUND")
	// Another server's media needs federation: 404, no network.
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/download/example.org/abc", u.Token, nil), 404, "M_NOT_FOUND")
	// The deprecated unauthenticated endpoints are frozen.
	wantErrcode(t, ts.do(t, "GET", "/_matrix/media/v3/download/"+mxc, "", nil), 404, "M_NOT_FOUND")
	wantErrcode(t, ts.do(t, "GET", "/_matrix/media/v3/download/"+mxc, u.Token, nil), 404, "M_NOT_FOUND")
	wantErrcode(t, ts.do(t, "GET", "/_matrix/media/v3/thumbnail/"+mxc+"?width=32&height=32", u.Token, nil), 404, "M_NOT_FOUND")

	for _, p := range []string{mediaV1 + "/config", "/_matrix/media/v3/config"} {
		r = ts.do(t, "GET", p, u.Token, nil)
		r.wantStatus(t, 200)
		loadSpec(t).check(t, r)
		if r.json(t)["m.upload.size"] != float64(1<<20) {
			t.Fatalf("%s: %s", p, r.Body)
		}
	}
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/preview_url?url=https://example.org/", u.Token, nil), 403, "M_FORBIDDEN")
}

func TestMediaLimits(t *testing.T) {
	ts, dir := newMediaServer(t, media.Config{MaxUploadBytes: 100 << 10, QuotaBytes: 150 << 10})
	u := ts.register(t, "alice")
	r := ts.do(t, "POST", mediaUpload, u.Token, bytes.Repeat([]byte("x"), 100<<10+1))
	wantErrcode(t, r, 413, "M_TOO_LARGE")
	loadSpec(t).check(t, r)
	// Without Content-Length the limit is found while streaming.
	req := ts.newRequest(t, "POST", mediaUpload, u.Token, struct{ *bytes.Reader }{bytes.NewReader(bytes.Repeat([]byte("y"), 100<<10+1))})
	req.ContentLength = -1
	wantErrcode(t, ts.doRequest(t, req), 413, "M_TOO_LARGE")
	if n := mediaFiles(t, dir); n != 0 {
		t.Fatalf("%d files stored by refused uploads", n)
	}

	ts.uploadMedia(t, u, "application/octet-stream", "", bytes.Repeat([]byte("a"), 100<<10))
	r = ts.do(t, "POST", mediaUpload, u.Token, bytes.Repeat([]byte("b"), 60<<10))
	wantErrcode(t, r, 403, "M_FORBIDDEN")
	loadSpec(t).check(t, r)
	if n := mediaFiles(t, dir); n != 1 {
		t.Fatalf("%d files stored, want the one accepted upload", n)
	}
}

func TestMediaAsyncUpload(t *testing.T) {
	ts, _ := newMediaServer(t, media.Config{})
	u := ts.register(t, "alice")
	other := ts.register(t, "bob")
	r := ts.do(t, "POST", "/_matrix/media/v1/create", u.Token, nil)
	r.wantStatus(t, 200)
	loadSpec(t).check(t, r)
	if _, ok := r.json(t)["unused_expires_at"].(float64); !ok {
		t.Fatalf("no unused_expires_at: %s", r.Body)
	}
	mxc := strings.TrimPrefix(r.str(t, "content_uri"), "mxc://")

	r = ts.do(t, "GET", mediaV1+"/download/"+mxc+"?timeout_ms=0", u.Token, nil)
	wantErrcode(t, r, 504, "M_NOT_YET_UPLOADED")
	loadSpec(t).check(t, r)

	// A download that is willing to wait gets the content once it lands.
	var wg sync.WaitGroup
	var waited *response
	wg.Add(1)
	go func() {
		defer wg.Done()
		waited = ts.do(t, "GET", mediaV1+"/download/"+mxc+"?timeout_ms=60000", other.Token, nil)
	}()
	put := func(tok string, body string) *response {
		req := ts.newRequest(t, "PUT", "/_matrix/media/v3/upload/"+mxc+"?filename=late.txt", tok, body)
		req.Header.Set("Content-Type", "text/plain")
		return ts.doRequest(t, req)
	}
	r = put(other.Token, "not yours")
	wantErrcode(t, r, 403, "M_FORBIDDEN")
	r = put(u.Token, "arrived late")
	r.wantStatus(t, 200)
	loadSpec(t).check(t, r)
	wg.Wait()
	waited.wantStatus(t, 200)
	if string(waited.Body) != "arrived late" || waited.Header.Get("Content-Disposition") != "inline; filename=late.txt" {
		t.Fatalf("waiting download: %q %v", waited.Body, waited.Header)
	}
	r = put(u.Token, "again")
	wantErrcode(t, r, 409, "M_CANNOT_OVERWRITE_MEDIA")
	loadSpec(t).check(t, r)
	wantErrcode(t, ts.do(t, "PUT", "/_matrix/media/v3/upload/"+testServerName+"/unknown", u.Token, "x"), 404, "M_NOT_FOUND")
}

func TestMediaThumbnail(t *testing.T) {
	ts, _ := newMediaServer(t, media.Config{})
	u := ts.register(t, "alice")
	img := image.NewNRGBA(image.Rect(0, 0, 200, 100))
	for x := 0; x < 200; x++ {
		img.Set(x, 50, color.NRGBA{255, 0, 0, 255})
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	mxc := ts.uploadMedia(t, u, "image/png", "wide.png", buf.Bytes())

	r := ts.do(t, "GET", mediaV1+"/thumbnail/"+mxc+"?width=32&height=32&method=crop&animated=true", u.Token, nil)
	r.wantStatus(t, 200)
	if r.Header.Get("Content-Type") != "image/png" || r.Header.Get("Content-Disposition") != "inline; filename=thumbnail.png" ||
		r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("thumbnail headers %v", r.Header)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(r.Body))
	if err != nil || cfg.Width != 32 || cfg.Height != 32 {
		t.Fatalf("thumbnail %+v %v", cfg, err)
	}
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/thumbnail/"+mxc+"?width=abc&height=32", u.Token, nil), 400, "M_INVALID_PARAM")
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/thumbnail/"+mxc+"?width=32&height=32&method=stretch", u.Token, nil), 400, "M_INVALID_PARAM")
	wantErrcode(t, ts.do(t, "GET", mediaV1+"/thumbnail/"+mxc, u.Token, nil), 400, "M_MISSING_PARAM")

	// A file that claims to be an image but is not one.
	bad := ts.uploadMedia(t, u, "image/jpeg", "", []byte("definitely not a jpeg"))
	r = ts.do(t, "GET", mediaV1+"/thumbnail/"+bad+"?width=32&height=32", u.Token, nil)
	wantErrcode(t, r, 400, "M_UNKNOWN")
	loadSpec(t).check(t, r)
	// The server is still up.
	ts.do(t, "GET", mediaV1+"/config", u.Token, nil).wantStatus(t, http.StatusOK)
}
