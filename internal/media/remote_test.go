package media

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// originServer stands in for the other homeserver behind the Fetcher
// boundary (the federation service implements it; its own tests and the
// e2e test run the real one). It serves files from memory and counts
// requests and bytes read.
type originServer struct {
	mu    sync.Mutex
	files map[string]string // server/mediaID → content
	calls int
	read  int
	// lie, when set, is the Content-Length the server claims.
	lie int64
}

func (o *originServer) Download(ctx context.Context, server, mediaID string) (*RemoteFile, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	body, ok := o.files[server+"/"+mediaID]
	if !ok {
		return nil, matrixerr.NotFound("media not found on " + server)
	}
	n := int64(-1)
	if o.lie != 0 {
		n = o.lie
	}
	return &RemoteFile{Body: io.NopCloser(&countingReader{o: o, r: strings.NewReader(body)}), ContentLength: n,
		ContentType: "image/png", Filename: "pic.png"}, nil
}

type countingReader struct {
	o *originServer
	r io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.o.read += n // Download's caller reads after it returned: no lock held
	return n, err
}

func pngBytes(t *testing.T) string {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 100, 50))); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestRemoteFetchOnceThenCache: the first download fetches and stores,
// the second is served from the copy; nobody's quota is charged, and the
// copy is not local media.
func TestRemoteFetchOnceThenCache(t *testing.T) {
	r := newTestRepo(t, Config{QuotaBytes: 10})
	pic := pngBytes(t)
	o := &originServer{files: map[string]string{"other.test/abcDEF123": pic}}
	r.SetFetcher(o)
	ctx := context.Background()
	for i := range 2 {
		rec, err := r.Remote(ctx, "other.test", "abcDEF123")
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		f, err := r.Open(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if string(got) != pic || rec.ContentType != "image/png" || rec.Filename != "pic.png" || rec.Origin != "other.test" {
			t.Fatalf("download %d: %d bytes, record %+v", i, len(got), rec)
		}
	}
	if o.calls != 1 {
		t.Fatalf("%d fetches, want 1", o.calls)
	}
	// Over the 10-byte quota, yet stored: remote media is nobody's upload.
	r.db.View(func(tx *store.Tx) error {
		if k, _ := tx.Cursor(store.MediaUsage).First(); k != nil {
			t.Errorf("usage charged to %q", k)
		}
		return nil
	})
	if _, err := r.Lookup("other.test/abcDEF123"); !IsNotFound(err) {
		t.Fatalf("the cached copy is reachable as local media: %v", err)
	}
	// Thumbnails are made here from the cached original.
	rec, _ := r.RemoteRecord("other.test", "abcDEF123")
	th, err := r.Thumbnail(ctx, rec, 32, 32, MethodCrop)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(th.File)
	th.File.Close()
	if err != nil || cfg.Width != 32 || cfg.Height != 32 {
		t.Fatalf("thumbnail %+v %v", cfg, err)
	}
}

// TestRemoteTooLarge: over MaxUploadBytes, by the declared length (nothing
// read) or while streaming, is 502 M_TOO_LARGE and stores nothing.
func TestRemoteTooLarge(t *testing.T) {
	r := newTestRepo(t, Config{MaxUploadBytes: 100})
	o := &originServer{files: map[string]string{"other.test/big": strings.Repeat("x", 101)}}
	r.SetFetcher(o)
	ctx := context.Background()
	_, err := r.Remote(ctx, "other.test", "big")
	wantCode(t, err, "M_TOO_LARGE", 502)
	if n := blobCount(t, r); n != 0 {
		t.Fatalf("%d files left", n)
	}
	if _, err := r.RemoteRecord("other.test", "big"); !IsNotFound(err) {
		t.Fatalf("a record was left: %v", err)
	}
	o.lie, o.read = 101, 0
	_, err = r.Remote(ctx, "other.test", "big")
	wantCode(t, err, "M_TOO_LARGE", 502)
	if o.read != 0 {
		t.Fatalf("read %d bytes of a file declared too large", o.read)
	}
	if o.calls != 2 {
		t.Fatalf("%d fetches, want 2 (nothing cached)", o.calls)
	}
}

// TestRemoteRefusals: no fetcher, bad IDs, this server's own name and a
// remote 404 all answer without storing anything.
func TestRemoteRefusals(t *testing.T) {
	r := newTestRepo(t, Config{})
	ctx := context.Background()
	_, err := r.Remote(ctx, "other.test", "abc")
	wantCode(t, err, "M_NOT_FOUND", 404)
	o := &originServer{files: map[string]string{}}
	r.SetFetcher(o)
	for _, c := range [][2]string{{"other.test", "a/b"}, {"other.test", ""}, {"a/b", "abc"}, {"other.test", "a%2Fb"}} {
		_, err := r.Remote(ctx, c[0], c[1])
		wantCode(t, err, "M_NOT_FOUND", 404)
	}
	if o.calls != 0 {
		t.Fatalf("%d fetches for invalid IDs", o.calls)
	}
	_, err = r.Remote(ctx, r.ServerName(), "abc")
	wantCode(t, err, "M_INVALID_PARAM", 400)
	_, err = r.Remote(ctx, "other.test", "missing")
	wantCode(t, err, "M_NOT_FOUND", 404)
	if n := blobCount(t, r); n != 0 {
		t.Fatalf("%d files stored", n)
	}
}

// slowOrigin blocks every download until release is closed.
type slowOrigin struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (s *slowOrigin) Download(ctx context.Context, server, mediaID string) (*RemoteFile, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &RemoteFile{Body: io.NopCloser(strings.NewReader("shared")), ContentLength: -1}, nil
}

// TestRemoteOneFetchAtATime: while a file is being fetched, another
// request for it waits instead of fetching again (here it gives up, its
// context being cancelled), and afterwards gets the copy.
func TestRemoteOneFetchAtATime(t *testing.T) {
	r := newTestRepo(t, Config{})
	o := &slowOrigin{entered: make(chan struct{}, 4), release: make(chan struct{})}
	r.SetFetcher(o)
	first := make(chan error, 1)
	go func() {
		_, err := r.Remote(context.Background(), "other.test", "m1")
		first <- err
	}()
	<-o.entered
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Remote(cancelled, "other.test", "m1"); err != context.Canceled {
		t.Fatalf("second request during the fetch: %v, want it to wait (and give up)", err)
	}
	close(o.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	rec, err := r.Remote(context.Background(), "other.test", "m1")
	if err != nil || rec.Size != 6 {
		t.Fatalf("after the fetch: %+v %v", rec, err)
	}
	if o.calls != 1 {
		t.Fatalf("%d fetches, want 1", o.calls)
	}
}
