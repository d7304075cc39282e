package media

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"io"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// What an image's header says before it is decoded: its size against the
// pixel limit and the memory its decode will take against the decode
// budget (budget.go).

// imageInfo is what an image's header declares.
type imageInfo struct {
	width, height int
	format        string
	cost          int64 // estimated bytes of memory its decode takes
}

// readHeader reads the image's header only, refuses it if it declares
// more than maxPixels, estimates the memory decoding it takes, and rewinds
// src for the decode.
func readHeader(src io.ReadSeeker, maxPixels int64) (info imageInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errCannotThumbnail(fmt.Sprintf("the image decoder failed: %v", p))
		}
	}()
	cfg, format, err := image.DecodeConfig(bufio.NewReader(src)) // reads the header only
	if err != nil {
		return info, errCannotThumbnail("not a readable image")
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return info, errCannotThumbnail("the image has no pixels")
	}
	pixels := int64(cfg.Width) * int64(cfg.Height)
	if pixels > maxPixels {
		return info, matrixerr.TooLarge(fmt.Sprintf("the image is %d×%d pixels, over the %d pixel limit", cfg.Width, cfg.Height, maxPixels))
	}
	info = imageInfo{width: cfg.Width, height: cfg.Height, format: format, cost: decodeCost(pixels, cfg.ColorModel)}
	if format == "jpeg" {
		info.cost += jpegCoeffBytes(src, pixels)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return info, fmt.Errorf("media: rewind image: %w", err)
	}
	return info, nil
}

// decodeCost estimates the bytes of the decoded image and the thumbnail
// work on it: 4 per pixel (RGBA, or less for gray, paletted and YCbCr
// images), 8 for 16-bit-per-channel ones.
func decodeCost(pixels int64, m color.Model) int64 {
	switch m {
	case color.RGBA64Model, color.NRGBA64Model, color.Gray16Model:
		return 8 * pixels
	}
	return 4 * pixels
}

// jpegCoeffBytes is the extra memory of a progressive JPEG, whose decoder
// keeps every DCT coefficient (64 int32 per 8×8 block and component, so 4
// bytes per pixel of each component, less for subsampled ones) until the
// last scan. It finds the frame header that DecodeConfig accepted the way
// image/jpeg does (fill bytes before a marker and stray bytes between
// segments skipped, ITU T.81 §B.1.1.2), so padding cannot make a
// progressive image look baseline; baseline JPEGs cost nothing extra, and
// a header it cannot find costs the worst case, four full-size components.
func jpegCoeffBytes(src io.ReadSeeker, pixels int64) int64 {
	const worst = 4 * 4
	if _, err := src.Seek(2, io.SeekStart); err != nil { // after SOI
		return worst * pixels
	}
	br := bufio.NewReader(src)
	for range 1000 {
		m, err := nextJPEGMarker(br)
		if err != nil {
			return worst * pixels
		}
		if m >= 0xd0 && m <= 0xd7 { // RSTn: no length
			continue
		}
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return worst * pixels
		}
		n := int(l[0])<<8 | int(l[1]) - 2
		if n < 0 {
			return worst * pixels
		}
		switch m {
		case 0xc0, 0xc1: // the frame types image/jpeg reads besides SOF2
			return 0
		case 0xc2:
			seg := make([]byte, min(n, 6+3*255))
			if _, err := io.ReadFull(br, seg); err != nil || len(seg) < 6 {
				return worst * pixels
			}
			comps := seg[6:] // after precision, height, width and the count
			var hmax, vmax, units int64 = 1, 1, 0
			for c := 0; c < int(seg[5]) && 3*c+1 < len(comps); c++ {
				hv := comps[3*c+1]
				hmax, vmax = max(hmax, int64(hv>>4)), max(vmax, int64(hv&0x0f))
				units += int64(hv>>4) * int64(hv&0x0f)
			}
			return 4 * pixels * units / (hmax * vmax)
		}
		if _, err := br.Discard(n); err != nil {
			return worst * pixels
		}
	}
	return worst * pixels
}

// nextJPEGMarker reads up to and including the next marker's code, as
// image/jpeg does: bytes before an 0xff are skipped, "\xff\x00" is data,
// and repeated 0xff are fill bytes.
func nextJPEGMarker(br *bufio.Reader) (byte, error) {
	var a, b byte
	var err error
	read := func() byte {
		var c byte
		if err == nil {
			c, err = br.ReadByte()
		}
		return c
	}
	a, b = read(), read()
	for err == nil {
		for a != 0xff && err == nil {
			a, b = b, read()
		}
		if b == 0x00 {
			a, b = read(), read()
			continue
		}
		for b == 0xff && err == nil {
			b = read()
		}
		return b, err
	}
	return 0, err
}
