package media

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers the WebP decoder with image.Decode

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Thumbnail methods (Client-Server API §"Thumbnails").
const (
	MethodScale = "scale"
	MethodCrop  = "crop"
)

// thumbSize is one of the sizes thumbnails are made in. Snapping requests
// to a few sizes (the spec suggests it) bounds the cache on disk.
type thumbSize struct {
	w, h   int
	method string
}

var thumbSizes = []thumbSize{
	{32, 32, MethodCrop}, {96, 96, MethodCrop},
	{320, 240, MethodScale}, {640, 480, MethodScale}, {800, 600, MethodScale},
}

// pickSize returns the smallest standard size of the method that is at
// least as large as asked, or the largest one. Crop requests larger than
// every crop size fall back to scaling, as the spec allows.
func pickSize(w, h int, method string) thumbSize {
	var best *thumbSize
	for i, s := range thumbSizes {
		if s.method == method && s.w >= w && s.h >= h {
			return s
		}
		if s.method == method || best == nil {
			best = &thumbSizes[i]
		}
	}
	if method == MethodCrop {
		return pickSize(w, h, MethodScale)
	}
	return *best
}

// Thumb is a generated (or cached) thumbnail.
type Thumb struct {
	File        *os.File
	ContentType string
}

// errCannotThumbnail is the spec's 400 for content the server cannot
// thumbnail (GET /thumbnail).
func errCannotThumbnail(why string) *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN",
		Message: "cannot generate a thumbnail: " + why}
}

// Thumbnail returns a thumbnail of an uploaded record, making and caching
// it on first use. Only PNG, JPEG, GIF (first frame) and WebP are
// thumbnailed; animated thumbnails are never produced, which the spec
// allows for animated=true.
func (r *Repo) Thumbnail(ctx context.Context, rec *Record, w, h int, method string) (*Thumb, error) {
	if w <= 0 || h <= 0 {
		return nil, matrixerr.InvalidParam("width and height must be positive integers")
	}
	if method != MethodScale && method != MethodCrop {
		return nil, matrixerr.InvalidParam("method must be scale or crop")
	}
	if !thumbnailable(rec.ContentType) {
		return nil, errCannotThumbnail("not a supported image type")
	}
	size := pickSize(w, h, method)
	outType := "image/png"
	if baseType(rec.ContentType) == "image/jpeg" {
		outType = "image/jpeg"
	}
	cache := filepath.Join(r.cfg.Dir, "thumbnails", rec.SHA256[:2], rec.SHA256,
		fmt.Sprintf("%dx%d-%s.%s", size.w, size.h, size.method, strings.TrimPrefix(outType, "image/")))
	if f, err := os.Open(cache); err == nil {
		return &Thumb{File: f, ContentType: outType}, nil
	}
	src, err := r.Open(rec)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	info, err := readHeader(src, r.cfg.MaxPixels)
	if err != nil {
		return nil, err
	}
	// The decode's memory is reserved before it starts: over the budget a
	// request waits for others to finish, and an image that alone would
	// exceed it is refused like one over the pixel limit.
	if info.cost > r.cfg.DecodeBudgetBytes {
		return nil, matrixerr.TooLarge(fmt.Sprintf("decoding the %d×%d image would take about %d bytes, over the %d byte thumbnail memory budget",
			info.width, info.height, info.cost, r.cfg.DecodeBudgetBytes))
	}
	if err := r.budget.acquire(ctx, info.cost); err != nil {
		return nil, err
	}
	defer r.budget.release(info.cost)
	select {
	case r.thumbSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.thumbSem }()
	if r.onDecode != nil {
		defer r.onDecode(info.cost)()
	}
	var buf bytes.Buffer
	if err := decodeThumbnail(src, &buf, size.w, size.h, size.method, outType, info.format); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(cache, buf.Bytes()); err != nil {
		return nil, err
	}
	f, err := os.Open(cache)
	if err != nil {
		return nil, fmt.Errorf("media: open thumbnail: %w", err)
	}
	return &Thumb{File: f, ContentType: outType}, nil
}

// baseType is a content type without parameters, lower-cased.
func baseType(ct string) string {
	t, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

func thumbnailable(ct string) bool {
	switch baseType(ct) {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

// MakeThumbnail decodes the image in src and writes a w×h thumbnail
// (scale: fit inside, never enlarged; crop: fill exactly, centred) encoded
// as outType. Images over maxPixels are refused before they are decoded,
// so a small file that declares huge dimensions (a decompression bomb)
// costs nothing; truncated or foreign data is an error, and a panic inside
// a decoder is turned into one. It has no memory budget: Repo.Thumbnail
// adds one.
func MakeThumbnail(src io.ReadSeeker, dst io.Writer, w, h int, method, outType string, maxPixels int64) error {
	info, err := readHeader(src, maxPixels)
	if err != nil {
		return err
	}
	return decodeThumbnail(src, dst, w, h, method, outType, info.format)
}

// decodeThumbnail decodes src (already checked by readHeader) and writes
// the thumbnail; a panic inside a decoder becomes an error.
func decodeThumbnail(src io.Reader, dst io.Writer, w, h int, method, outType, format string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errCannotThumbnail(fmt.Sprintf("the image decoder failed: %v", p))
		}
	}()
	br := bufio.NewReader(src)
	var img image.Image
	if format == "gif" {
		img, err = gif.Decode(br) // the first frame only
	} else {
		img, _, err = image.Decode(br)
	}
	if err != nil {
		return errCannotThumbnail("the image is damaged or truncated")
	}
	out := resize(img, w, h, method)
	if outType == "image/jpeg" {
		err = jpeg.Encode(dst, out, &jpeg.Options{Quality: 85})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(dst, out)
	}
	if err != nil {
		return fmt.Errorf("media: encode thumbnail: %w", err)
	}
	return nil
}

// resize scales img to fit in w×h (scale) or to fill w×h from a centred
// crop (crop). It never enlarges: a smaller image keeps its size.
func resize(img image.Image, w, h int, method string) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	srcRect := b
	var dw, dh int
	if method == MethodCrop {
		// Crop the source to the target's aspect ratio, then scale.
		if sw*h > sh*w { // source is wider
			cw := sh * w / h
			x0 := b.Min.X + (sw-cw)/2
			srcRect = image.Rect(x0, b.Min.Y, x0+cw, b.Max.Y)
		} else {
			ch := sw * h / w
			y0 := b.Min.Y + (sh-ch)/2
			srcRect = image.Rect(b.Min.X, y0, b.Max.X, y0+ch)
		}
		dw, dh = min(w, srcRect.Dx()), min(h, srcRect.Dy())
	} else {
		dw, dh = sw, sh
		if dw > w {
			dw, dh = w, max(1, sh*w/sw)
		}
		if dh > h {
			dw, dh = max(1, sw*h/sh), h
		}
	}
	dw, dh = max(dw, 1), max(dh, 1)
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	// Large reductions: a cheap bilinear pass to about twice the target
	// first, so Catmull-Rom's cost does not grow with a 12 MP source.
	if srcRect.Dx() > 4*dw && srcRect.Dy() > 4*dh {
		mid := image.NewRGBA(image.Rect(0, 0, 2*dw, 2*dh))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), img, srcRect, draw.Src, nil)
		img, srcRect = mid, mid.Bounds()
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, srcRect, draw.Src, nil)
	return dst
}

// writeFileAtomic writes b to path through a temp file and a rename, so
// readers never see half a thumbnail.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("media: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("media: write thumbnail: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("media: write thumbnail: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("media: write thumbnail: %w", err)
	}
	return nil
}

// ThumbnailParams reads the query of a thumbnail request (Client-Server
// API §"Thumbnails"; the federation endpoint takes the same): width and
// height are required integers, animated is true or false, and method
// defaults to scale.
func ThumbnailParams(q url.Values) (width, height int, method string, err error) {
	if q.Get("width") == "" || q.Get("height") == "" {
		return 0, 0, "", matrixerr.MissingParam("width and height are required")
	}
	width, err1 := strconv.Atoi(q.Get("width"))
	height, err2 := strconv.Atoi(q.Get("height"))
	if err1 != nil || err2 != nil {
		return 0, 0, "", matrixerr.InvalidParam("width and height must be integers")
	}
	if a := q.Get("animated"); a != "" && a != "true" && a != "false" {
		return 0, 0, "", matrixerr.InvalidParam("animated must be true or false")
	}
	method = q.Get("method")
	if method == "" {
		method = MethodScale
	}
	return width, height, method, nil
}
