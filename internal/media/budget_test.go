package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"slices"
	"sync"
	"testing"
)

// A header that declares just over 32 MP (Synapse's default limit) is
// refused as too large before anything is decoded; just under it is not
// refused for its size.
func TestDefaultPixelLimit(t *testing.T) {
	r := newTestRepo(t, Config{})
	decoded := false
	r.onDecode = func(int64) func() { decoded = true; return func() {} }
	ctx := context.Background()
	thumb := func(w, h int) error {
		id, err := r.Store(ctx, "@a:test.local", Upload{Body: bytes.NewReader(bombPNG(t, w, h)), ContentLength: -1, ContentType: "image/png"})
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := r.Lookup(id)
		_, err = r.Thumbnail(ctx, rec, 32, 32, MethodCrop)
		return err
	}
	wantCode(t, thumb(6000, 6000), "M_TOO_LARGE", 413) // 36 MP
	if decoded {
		t.Fatal("an image over the pixel limit was decoded")
	}
	// 30 MP passes the limit; the crafted file then fails as truncated.
	wantCode(t, thumb(5000, 6000), "M_UNKNOWN", 400)
	if !decoded {
		t.Fatal("a 30 MP image was refused before decoding")
	}
}

// grayPNG is a real w×h PNG (it compresses to almost nothing).
func grayPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Concurrent thumbnails of large images never decode more than the memory
// budget at once: a second request waits while the first holds the budget,
// a waiting request gives up with its context, and the waiter proceeds
// once the first is done.
func TestDecodeBudget(t *testing.T) {
	const side = 1000 // 4 MB decoded at 4 bytes a pixel
	budget := int64(6 << 20)
	r := newTestRepo(t, Config{DecodeBudgetBytes: budget})
	ctx := context.Background()
	id, err := r.Store(ctx, "@a:test.local", Upload{Body: bytes.NewReader(grayPNG(t, side, side)), ContentLength: -1, ContentType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := r.Lookup(id)

	var mu sync.Mutex
	var inFlight, peak int64
	decodes := 0
	entered := make(chan struct{}, 8)
	release := make(chan struct{})
	r.onDecode = func(cost int64) func() {
		mu.Lock()
		inFlight += cost
		peak = max(peak, inFlight)
		decodes++
		first := decodes == 1
		mu.Unlock()
		entered <- struct{}{}
		if first {
			<-release // hold the budget until the others are parked
		}
		return func() { mu.Lock(); inFlight -= cost; mu.Unlock() }
	}
	waiting := make(chan int64, 8)
	r.budget.onWait = func(n int64) { waiting <- n }

	thumb := func(ctx context.Context, w int, errs chan<- error) {
		th, err := r.Thumbnail(ctx, rec, w, w, MethodCrop)
		if err == nil {
			th.File.Close()
		}
		errs <- err
	}
	errA, errB, errC := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go thumb(ctx, 32, errA)
	<-entered
	go thumb(ctx, 96, errB)
	select {
	case <-waiting:
	case <-entered:
		mu.Lock()
		t.Fatalf("a second decode started while the first held the budget: %d bytes in flight, budget %d", inFlight, budget)
	}
	cctx, cancel := context.WithCancel(ctx)
	go thumb(cctx, 800, errC)
	<-waiting
	cancel()
	if err := <-errC; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting thumbnail whose request ended: %v, want context.Canceled", err)
	}
	close(release)
	for _, ch := range []chan error{errA, errB} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if decodes != 2 || peak > budget {
		t.Fatalf("%d decodes, peak %d bytes in flight, budget %d", decodes, peak, budget)
	}
	if r.budget.held != 0 || len(r.budget.waiters) != 0 {
		t.Fatalf("budget left holding %d bytes, %d waiters", r.budget.held, len(r.budget.waiters))
	}
}

// An image whose decode alone would exceed the budget is refused like one
// over the pixel limit, without decoding.
func TestDecodeOverBudget(t *testing.T) {
	r := newTestRepo(t, Config{DecodeBudgetBytes: 1 << 20})
	r.onDecode = func(int64) func() { t.Fatal("decoded an image over the budget"); return nil }
	ctx := context.Background()
	id, err := r.Store(ctx, "@a:test.local", Upload{Body: bytes.NewReader(grayPNG(t, 1000, 1000)), ContentLength: -1, ContentType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := r.Lookup(id)
	_, err = r.Thumbnail(ctx, rec, 32, 32, MethodCrop)
	wantCode(t, err, "M_TOO_LARGE", 413)
}

// A progressive JPEG's coefficient buffers are counted from its frame
// header; a baseline JPEG adds nothing.
func TestJPEGCoeffBytes(t *testing.T) {
	prog := []byte{0xff, 0xd8, // SOI
		0xff, 0xe0, 0, 4, 'x', 'y', // an APP0 segment to skip
		0xff, 0xc2, 0, 17, 8, 0, 16, 0, 16, 3, // SOF2: 8 bit, 16×16, 3 components
		1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1} // 4:2:0
	if got := jpegCoeffBytes(bytes.NewReader(prog), 256); got != 4*256*6/4 {
		t.Fatalf("progressive 4:2:0: %d bytes, want %d", got, 4*256*6/4)
	}
	if got := jpegCoeffBytes(bytes.NewReader(encoded(t, "jpeg")), 300*200); got != 0 {
		t.Fatalf("baseline: %d extra bytes", got)
	}
}

// The frame header is found the way Go's decoder finds it (fill bytes
// before a marker, stray bytes between segments), so padding cannot make a
// progressive JPEG look baseline and slip its coefficient buffers past the
// budget; a header the walk cannot find counts as the worst case.
func TestJPEGCoeffBytesPadded(t *testing.T) {
	soiJFIF := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	sof2 := []byte{0xff, 0xc2, 0, 17, 8, 0, 16, 0, 16, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1}
	for name, img := range map[string][]byte{
		"fill bytes":  slices.Concat(soiJFIF, []byte{0xff}, sof2),
		"stray bytes": slices.Concat(soiJFIF, []byte{0x12, 0x34, 0xff, 0x00}, sof2),
	} {
		if _, _, err := image.DecodeConfig(bytes.NewReader(img)); err != nil {
			t.Fatalf("%s: Go's decoder refuses the test image: %v", name, err)
		}
		if got := jpegCoeffBytes(bytes.NewReader(img), 256); got != 4*256*6/4 {
			t.Errorf("%s: %d bytes, want %d", name, got, 4*256*6/4)
		}
	}
	if got := jpegCoeffBytes(bytes.NewReader([]byte{0xff, 0xd8, 0xff, 0xc2, 0, 0}), 256); got < 4*256*3 {
		t.Errorf("unreadable frame header: %d bytes, want the worst case", got)
	}
}
