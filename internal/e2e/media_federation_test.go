package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix"
)

// TestFederationMedia: bob@hs2 downloads alice@hs1's upload through his
// own server (authenticated media over federation), gets it again and a
// thumbnail of it while hs1 is down (hs2's cache), is refused media over
// hs2's upload limit with nothing kept, and hs1 refuses an unsigned
// federation media request.
func TestFederationMedia(t *testing.T) {
	t.Parallel()
	const limit = 8192
	net := newFedNet(t, "hs1.test", "hs2.test")
	hs1, hs2 := net.Daemons["hs1.test"], net.Daemons["hs2.test"]
	hs2.Extra = append(hs2.Extra, "--max-upload-bytes", "8192")
	hs1.Start()
	hs2.Start()
	alice := hs1.Register("alice")
	bob := hs2.Register("bob")

	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		for y := range 48 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 90, 255})
		}
	}
	var buf bytes.Buffer
	noErr(t, png.Encode(&buf, img), "encode png")
	picture := buf.Bytes()
	if len(picture) > limit {
		t.Fatalf("test picture is %d bytes, over hs2's limit", len(picture))
	}
	up := must(alice.UploadBytesWithName(ctx(t), picture, "image/png", "gradient.png")).get(t)
	if up.ContentURI.Homeserver != "hs1.test" {
		t.Fatalf("content URI %s", up.ContentURI)
	}

	res := must(bob.Download(ctx(t), up.ContentURI)).get(t)
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(got, picture) {
		t.Fatalf("bob@hs2 downloaded %d bytes, alice uploaded %d", len(got), len(picture))
	}
	if ct := res.Header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := res.Header.Get("Content-Disposition"); cd != `inline; filename=gradient.png` {
		t.Errorf("Content-Disposition %q", cd)
	}
	thumbnail := func(what string) {
		res := must(bob.DownloadThumbnail(ctx(t), up.ContentURI, 32, 32, mautrix.DownloadThumbnailExtra{Method: "crop"})).get(t)
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		cfg, err := png.DecodeConfig(bytes.NewReader(body))
		if err != nil || cfg.Width != 32 || cfg.Height != 32 {
			t.Fatalf("%s: thumbnail %+v %v", what, cfg, err)
		}
	}
	thumbnail("thumbnail with hs1 up")

	// Over hs2's limit: refused while streaming, and nothing is kept.
	big := make([]byte, 3*limit)
	rand.Read(big)
	bigUp := must(alice.UploadBytes(ctx(t), big, "application/octet-stream")).get(t)
	for range 2 { // the second attempt fetches again: no record was left
		_, err := bob.DownloadBytes(ctx(t), bigUp.ContentURI)
		wantMatrixErr(t, err, http.StatusBadGateway, "M_TOO_LARGE", "download of media over hs2's limit")
	}
	sum := sha256.Sum256(big)
	hexSum := hex.EncodeToString(sum[:])
	if _, err := os.Stat(filepath.Join(hs2.DataDir, "media", hexSum[:2], hexSum[2:4], hexSum)); !os.IsNotExist(err) {
		t.Errorf("the refused file is stored on hs2 (%v)", err)
	}
	if left, _ := os.ReadDir(filepath.Join(hs2.DataDir, "media", "tmp")); len(left) != 0 {
		t.Errorf("temp files left on hs2: %d", len(left))
	}

	// An unsigned request for the media on hs1's federation listener.
	pool := x509.NewCertPool()
	pool.AddCert(net.caCert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "hs1.test"}}}
	resp, err := hc.Get("https://" + net.addrs["hs1.test"] + "/_matrix/federation/v1/media/download/" + up.ContentURI.FileID)
	noErr(t, err, "unsigned federation media request")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned federation media request: %d, want 401", resp.StatusCode)
	}

	// hs1 down: hs2 serves its copy and thumbnails it.
	noErr(t, hs1.Stop(), "stop hs1")
	got = must(bob.DownloadBytes(ctx(t), up.ContentURI)).get(t)
	if !bytes.Equal(got, picture) {
		t.Fatalf("from hs2's cache: %d bytes, want %d", len(got), len(picture))
	}
	thumbnail("thumbnail with hs1 down")
	// Media hs2 never fetched is unreachable now.
	_, err = bob.DownloadBytes(ctx(t), bigUp.ContentURI)
	wantMatrixErr(t, err, http.StatusBadGateway, "M_UNKNOWN", "download from a stopped server")
}
