package e2e

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"testing"

	"maunium.net/go/mautrix"
)

// TestMedia drives the content repository of a real daemon with mautrix's
// media calls: a sync upload, an async one (create, then PUT), downloads
// and a thumbnail, and checks that the files survive a restart.
func TestMedia(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")

	cfg := must(alice.GetMediaConfig(ctx(t))).get(t)
	if cfg.UploadSize <= 0 {
		t.Fatalf("m.upload.size %d", cfg.UploadSize)
	}
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 120, 80)))
	picture := buf.Bytes()
	up := must(alice.UploadBytesWithName(ctx(t), picture, "image/png", "grey.png")).get(t)

	created := must(alice.CreateMXC(ctx(t))).get(t)
	must(alice.UploadMedia(ctx(t), mautrix.ReqUploadMedia{MXC: created.ContentURI,
		ContentBytes: []byte("sent later"), ContentType: "text/plain"})).get(t)

	d.Restart()
	got := must(bob.DownloadBytes(ctx(t), up.ContentURI)).get(t)
	if !bytes.Equal(got, picture) {
		t.Fatalf("downloaded %d bytes, uploaded %d", len(got), len(picture))
	}
	if got := must(bob.DownloadBytes(ctx(t), created.ContentURI)).get(t); string(got) != "sent later" {
		t.Fatalf("async upload downloaded as %q", got)
	}
	res := must(bob.DownloadThumbnail(ctx(t), up.ContentURI, 32, 32, mautrix.DownloadThumbnailExtra{Method: "crop"})).get(t)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	thumb, err := png.DecodeConfig(bytes.NewReader(body))
	if err != nil || thumb.Width != 32 || thumb.Height != 32 {
		t.Fatalf("thumbnail %+v %v", thumb, err)
	}
}
