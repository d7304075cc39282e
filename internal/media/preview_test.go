package media

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

const testPage = `<!doctype html><html><head><title>Plain title</title>
<meta property="og:title" content="The OG title">
<meta property="og:image" content="https://example.org/a.png">
<meta name="description" content="A description"></head><body>hi</body></html>`

func TestPreviewRefusesLoopback(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, testPage)
	}))
	defer srv.Close()
	r := newTestRepo(t, Config{Previews: true}) // the real policy
	ctx := context.Background()
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		_, err := r.Preview(ctx, u)
		wantCode(t, err, "M_FORBIDDEN", 403)
	}
	if hits.Load() != 0 {
		t.Fatalf("the loopback server was reached %d times", hits.Load())
	}
}

func TestPreviewOffByDefault(t *testing.T) {
	r := newTestRepo(t, Config{})
	_, err := r.Preview(context.Background(), "https://example.org/")
	wantCode(t, err, "M_FORBIDDEN", 403)
}

func TestPreviewOpenGraph(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><head>"+strings.Repeat(" ", previewMaxBytes)+`<title>past the cap</title>`)
		case "/bin":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte{0, 1, 2})
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, testPage)
		}
	}))
	defer srv.Close()
	r := newTestRepo(t, Config{Previews: true, PreviewPolicy: func(netip.Addr) bool { return true }})
	ctx := context.Background()
	og, err := r.Preview(ctx, srv.URL+"/page")
	if err != nil {
		t.Fatal(err)
	}
	if og["og:title"] != "The OG title" || og["og:description"] != "A description" {
		t.Fatalf("preview %v", og)
	}
	if _, ok := og["og:image"]; ok {
		t.Fatalf("og:image must be an mxc URI or absent: %v", og)
	}
	if _, err := r.Preview(ctx, srv.URL+"/page"); err != nil || hits.Load() != 1 {
		t.Fatalf("second preview not cached: %d fetches, %v", hits.Load(), err)
	}
	og, err = r.Preview(ctx, srv.URL+"/big")
	if err != nil || len(og) != 0 {
		t.Fatalf("body past the cap was read: %v %v", og, err)
	}
	og, err = r.Preview(ctx, srv.URL+"/bin")
	if err != nil || len(og) != 0 {
		t.Fatalf("non-HTML preview: %v %v", og, err)
	}
	_, err = r.Preview(ctx, "file:///etc/passwd")
	wantCode(t, err, "M_INVALID_PARAM", 400)
}
