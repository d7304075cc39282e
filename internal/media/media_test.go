package media

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// newTestRepo opens a repository over a real bbolt file in a temp dir.
func newTestRepo(t testing.TB, cfg Config) *Repo {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "hearth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.Dir = filepath.Join(dir, "media")
	if cfg.ServerName == "" {
		cfg.ServerName = "test.local"
	}
	r, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantCode(t *testing.T, err error, code string, status int) {
	t.Helper()
	var me *matrixerr.Error
	if !errors.As(err, &me) || me.Code != code || me.Status != status {
		t.Fatalf("error %v, want %d %s", err, status, code)
	}
}

// blobCount counts stored files (the content-addressed blobs), ignoring
// the temp and thumbnail folders.
func blobCount(t *testing.T, r *Repo) int {
	t.Helper()
	n := 0
	filepath.WalkDir(r.cfg.Dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && d.IsDir() && (d.Name() == "tmp" || d.Name() == "thumbnails") {
			return filepath.SkipDir
		}
		if d != nil && !d.IsDir() {
			n++
		}
		return nil
	})
	tmp, _ := os.ReadDir(filepath.Join(r.cfg.Dir, "tmp"))
	return n + len(tmp)
}

func upload(body string) Upload {
	return Upload{Body: strings.NewReader(body), ContentLength: int64(len(body)), ContentType: "text/plain"}
}

func TestStoreIsContentAddressed(t *testing.T) {
	r := newTestRepo(t, Config{})
	ctx := context.Background()
	a, err := r.Store(ctx, "@a:test.local", upload("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Store(ctx, "@b:test.local", upload("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two uploads got one media ID")
	}
	if n := blobCount(t, r); n != 1 {
		t.Fatalf("%d files for identical content, want 1", n)
	}
	rec, err := r.Lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	// sha256("hello")
	if rec.SHA256 != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" || rec.Size != 5 {
		t.Fatalf("record %+v", rec)
	}
	if _, err := os.Stat(filepath.Join(r.cfg.Dir, "2c", "f2", rec.SHA256)); err != nil {
		t.Fatalf("blob not at its content address: %v", err)
	}
}

func TestSizeLimit(t *testing.T) {
	r := newTestRepo(t, Config{MaxUploadBytes: 10})
	ctx := context.Background()
	// Declared too large: refused before reading.
	_, err := r.Store(ctx, "@a:test.local", Upload{Body: strings.NewReader("x"), ContentLength: 11})
	wantCode(t, err, "M_TOO_LARGE", 413)
	// Length unknown, body too large: refused while streaming.
	_, err = r.Store(ctx, "@a:test.local", Upload{Body: strings.NewReader(strings.Repeat("x", 11)), ContentLength: -1})
	wantCode(t, err, "M_TOO_LARGE", 413)
	if n := blobCount(t, r); n != 0 {
		t.Fatalf("%d files left after refused uploads", n)
	}
	if _, err := r.Store(ctx, "@a:test.local", Upload{Body: strings.NewReader(strings.Repeat("x", 10)), ContentLength: -1}); err != nil {
		t.Fatalf("upload at the limit: %v", err)
	}
}

func TestQuota(t *testing.T) {
	r := newTestRepo(t, Config{QuotaBytes: 10})
	ctx := context.Background()
	if _, err := r.Store(ctx, "@a:test.local", upload("123456")); err != nil {
		t.Fatal(err)
	}
	// Declared length over the remaining quota.
	_, err := r.Store(ctx, "@a:test.local", upload("abcde"))
	wantCode(t, err, "M_FORBIDDEN", 403)
	// Unknown length: found out after streaming; the new file must go again.
	_, err = r.Store(ctx, "@a:test.local", Upload{Body: strings.NewReader("abcde"), ContentLength: -1})
	wantCode(t, err, "M_FORBIDDEN", 403)
	if n := blobCount(t, r); n != 1 {
		t.Fatalf("%d files after refused uploads, want 1", n)
	}
	// Another user has their own quota.
	if _, err := r.Store(ctx, "@b:test.local", upload("abcde")); err != nil {
		t.Fatal(err)
	}
}

func TestAsyncUpload(t *testing.T) {
	r := newTestRepo(t, Config{})
	ctx := context.Background()
	id, expires, err := r.Create(ctx, "@a:test.local")
	if err != nil {
		t.Fatal(err)
	}
	if expires <= time.Now().UnixMilli() {
		t.Fatalf("unused_expires_at %d is not in the future", expires)
	}
	_, err = r.Ready(ctx, id, 0)
	wantCode(t, err, "M_NOT_YET_UPLOADED", 504)

	// A download that waits is woken by the upload.
	var wg sync.WaitGroup
	var got *Record
	var waitErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, waitErr = r.Ready(ctx, id, MaxWait)
	}()
	err = r.StoreTo(ctx, "@b:test.local", id, upload("x"))
	wantCode(t, err, "M_FORBIDDEN", 403)
	if err := r.StoreTo(ctx, "@a:test.local", id, upload("late content")); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if waitErr != nil || got.Size != int64(len("late content")) {
		t.Fatalf("waiting download: %+v, %v", got, waitErr)
	}
	err = r.StoreTo(ctx, "@a:test.local", id, upload("again"))
	wantCode(t, err, "M_CANNOT_OVERWRITE_MEDIA", 409)
	err = r.StoreTo(ctx, "@a:test.local", "nosuchid", upload("x"))
	wantCode(t, err, "M_NOT_FOUND", 404)
}

func TestPendingLimit(t *testing.T) {
	r := newTestRepo(t, Config{})
	ctx := context.Background()
	for i := 0; i < MaxPendingPerUser; i++ {
		if _, _, err := r.Create(ctx, "@a:test.local"); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := r.Create(ctx, "@a:test.local")
	wantCode(t, err, "M_LIMIT_EXCEEDED", 429)

	// Once they expire they stop counting, and are forgotten.
	var ids []string
	err = r.db.Update(ctx, func(tx *store.Tx) error {
		ids = ids[:0]
		c := tx.Cursor(store.MediaPending)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, string(k[len("@a:test.local")+1:]))
			if err := tx.Put(store.MediaPending, k, store.PutU64(1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(ids) != MaxPendingPerUser {
		t.Fatalf("expiring: %v (%d IDs)", err, len(ids))
	}
	if _, _, err := r.Create(ctx, "@a:test.local"); err != nil {
		t.Fatalf("create after expiry: %v", err)
	}
	if _, err := r.Lookup(ids[0]); !IsNotFound(err) {
		t.Fatalf("expired ID still stored: %v", err)
	}
}

// testImage is a 300×200 picture with a gradient, so scaling has work to do.
func testImage() image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, 300, 200))
	for y := 0; y < 200; y++ {
		for x := 0; x < 300; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	return img
}

func encoded(t *testing.T, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, testImage())
	case "jpeg":
		err = jpeg.Encode(&buf, testImage(), nil)
	case "gif":
		err = gif.Encode(&buf, testImage(), nil)
	case "webp":
		b, rerr := os.ReadFile("testdata/gradient.webp") // 40×30, made with cwebp -lossless
		buf.Write(b)
		err = rerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestThumbnailFormats(t *testing.T) {
	r := newTestRepo(t, Config{})
	ctx := context.Background()
	cases := []struct {
		format             string
		w, h               int
		method             string
		wantW, wantH       int
		wantType           string
		srcWidth, srcHight int
	}{
		{"png", 32, 32, MethodCrop, 32, 32, "image/png", 300, 200},
		{"jpeg", 100, 100, MethodScale, 300, 200, "image/jpeg", 300, 200}, // 320×240 fits the whole image
		{"gif", 96, 96, MethodCrop, 96, 96, "image/png", 300, 200},
		{"png", 50, 50, MethodScale, 300, 200, "image/png", 300, 200},
		{"webp", 32, 32, MethodCrop, 30, 30, "image/png", 40, 30}, // never enlarged
	}
	for _, c := range cases {
		id, err := r.Store(ctx, "@a:test.local", Upload{Body: bytes.NewReader(encoded(t, c.format)), ContentLength: -1, ContentType: "image/" + c.format})
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := r.Lookup(id)
		for round := 0; round < 2; round++ { // the second comes from the cache
			th, err := r.Thumbnail(ctx, rec, c.w, c.h, c.method)
			if err != nil {
				t.Fatalf("%s %s: %v", c.format, c.method, err)
			}
			img, format, err := image.Decode(th.File)
			th.File.Close()
			if err != nil {
				t.Fatalf("%s: thumbnail does not decode: %v", c.format, err)
			}
			if th.ContentType != c.wantType || "image/"+format != c.wantType {
				t.Fatalf("%s: thumbnail type %s (%s), want %s", c.format, th.ContentType, format, c.wantType)
			}
			if b := img.Bounds(); b.Dx() != c.wantW || b.Dy() != c.wantH {
				t.Fatalf("%s %s %dx%d: got %dx%d, want %dx%d", c.format, c.method, c.w, c.h, b.Dx(), b.Dy(), c.wantW, c.wantH)
			}
		}
	}
	// A large scale request shrinks a large image to fit.
	big := image.NewRGBA(image.Rect(0, 0, 2000, 1000))
	var buf bytes.Buffer
	png.Encode(&buf, big)
	id, _ := r.Store(ctx, "@a:test.local", Upload{Body: &buf, ContentLength: -1, ContentType: "image/png"})
	rec, _ := r.Lookup(id)
	th, err := r.Thumbnail(ctx, rec, 640, 480, MethodScale)
	if err != nil {
		t.Fatal(err)
	}
	defer th.File.Close()
	cfg, _, err := image.DecodeConfig(th.File)
	if err != nil || cfg.Width != 640 || cfg.Height != 320 {
		t.Fatalf("2000×1000 scaled into 640×480: %+v %v", cfg, err)
	}
}

// bombPNG is a valid PNG header declaring width×height pixels, followed by
// almost no data: what a decompression bomb looks like before inflating.
func bombPNG(t *testing.T, width, height int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	var buf bytes.Buffer
	png.Encode(&buf, img)
	b := buf.Bytes()
	// IHDR: type at 12, data (width, height, …) at 16..29, CRC at 29.
	put := func(off, v int) { b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	put(16, width)
	put(20, height)
	put(29, int(crc32.ChecksumIEEE(b[12:29])))
	if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != width {
		t.Fatalf("bomb header does not parse: %v", err)
	}
	return b
}

func TestHostileImages(t *testing.T) {
	const maxPixels = 1_000_000
	var out bytes.Buffer
	// A decompression bomb is refused from its header, before any decoding.
	err := MakeThumbnail(bytes.NewReader(bombPNG(t, 100000, 100000)), &out, 32, 32, MethodCrop, "image/png", maxPixels)
	wantCode(t, err, "M_TOO_LARGE", 413)
	// Truncated files fail cleanly.
	for _, format := range []string{"png", "jpeg", "gif"} {
		full := encoded(t, format)
		err := MakeThumbnail(bytes.NewReader(full[:len(full)/2]), &out, 32, 32, MethodCrop, "image/png", maxPixels)
		if err == nil {
			t.Fatalf("truncated %s accepted", format)
		}
		wantCode(t, err, "M_UNKNOWN", 400)
	}
	// Not an image at all.
	err = MakeThumbnail(strings.NewReader("#!/bin/sh\necho hi\n"), &out, 32, 32, MethodCrop, "image/png", maxPixels)
	wantCode(t, err, "M_UNKNOWN", 400)
}

func TestThumbnailBombThroughRepo(t *testing.T) {
	r := newTestRepo(t, Config{MaxPixels: 1_000_000})
	ctx := context.Background()
	id, err := r.Store(ctx, "@a:test.local", Upload{Body: bytes.NewReader(bombPNG(t, 50000, 50000)), ContentLength: -1, ContentType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := r.Lookup(id)
	_, err = r.Thumbnail(ctx, rec, 32, 32, MethodCrop)
	wantCode(t, err, "M_TOO_LARGE", 413)
	rec.ContentType = "application/pdf"
	_, err = r.Thumbnail(ctx, rec, 32, 32, MethodCrop)
	wantCode(t, err, "M_UNKNOWN", 400)
}

func TestDisposition(t *testing.T) {
	cases := []struct{ ct, name, want string }{
		{"image/png", "cat.png", `inline; filename=cat.png`},
		{"text/html", "page.html", `attachment; filename=page.html`},
		{"image/svg+xml", "", `attachment`},
		{"text/plain; charset=utf-8", `a "quoted" name.txt`, `inline; filename="a \"quoted\" name.txt"`},
		{"application/pdf", "résumé.pdf", `attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf`},
		{"text/plain", "a\r\nSet-Cookie: x=1", `inline; filename*=utf-8''a%0D%0ASet-Cookie%3A%20x%3D1`},
	}
	for _, c := range cases {
		if got := Disposition(c.ct, c.name); got != c.want {
			t.Errorf("Disposition(%q, %q) = %s, want %s", c.ct, c.name, got, c.want)
		}
	}
}

// FuzzThumbnail: arbitrary bytes never panic out of MakeThumbnail.
func FuzzThumbnail(f *testing.F) {
	for _, format := range []string{"png", "jpeg", "gif"} {
		var buf bytes.Buffer
		img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
		switch format {
		case "png":
			png.Encode(&buf, img)
		case "jpeg":
			jpeg.Encode(&buf, img, nil)
		case "gif":
			gif.Encode(&buf, img, nil)
		}
		f.Add(buf.Bytes())
	}
	if b, err := os.ReadFile("testdata/gradient.webp"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		MakeThumbnail(bytes.NewReader(data), &out, 32, 32, MethodCrop, "image/png", 4_000_000)
	})
}
