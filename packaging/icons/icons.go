// Package icons is Hearth's icon: Render draws it, `go generate` writes
// the PNGs (hicolor sizes) and hearth.ico committed here, and the tray and
// the packagers embed them (packaging/README.md).
package icons

import (
	"bytes"
	"embed"
	"encoding/binary"
	"fmt"
	"image/png"
)

//go:generate go run gen.go

// Sizes are the committed PNG sizes: the hicolor theme's usual sizes.
var Sizes = []int{16, 24, 32, 48, 64, 128, 256, 512}

// ICOSizes are the sizes inside hearth.ico: Windows picks 16/24/32/48 for
// the tray, menus and Explorer, 256 for large views; an ICO entry cannot
// be larger than 256.
var ICOSizes = []int{16, 24, 32, 48, 64, 128, 256}

//go:embed hearth-*.png hearth.ico
var files embed.FS

// PNG is the committed icon at size px (one of Sizes).
func PNG(size int) ([]byte, error) {
	return files.ReadFile(fmt.Sprintf("hearth-%d.png", size))
}

// ICOFile is the committed hearth.ico.
func ICOFile() []byte {
	b, err := files.ReadFile("hearth.ico")
	if err != nil {
		panic(err) // embedded at build time: cannot be missing
	}
	return b
}

// Encode is Render(size) as PNG bytes, with the encoder's defaults, so the
// same size gives the same bytes on every run.
func Encode(size int) ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, Render(size)); err != nil {
		return nil, fmt.Errorf("icons: encode %d px: %w", size, err)
	}
	return b.Bytes(), nil
}

// ICO packs PNG images into an .ico container (the ICONDIR header, one
// ICONDIRENTRY per image, then the images). Since Windows Vista an entry
// may hold a PNG rather than a BMP, which keeps the file small. sizes[i]
// is the width and height of pngs[i], at most 256 (stored as 0).
func ICO(sizes []int, pngs [][]byte) ([]byte, error) {
	if len(sizes) != len(pngs) || len(sizes) == 0 {
		return nil, fmt.Errorf("icons: ico needs one size per image")
	}
	var b bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&b, le, [3]uint16{0, 1, uint16(len(pngs))}) // reserved, type 1 = icon, count
	offset := 6 + 16*len(pngs)
	for i, p := range pngs {
		s := sizes[i]
		if s < 1 || s > 256 {
			return nil, fmt.Errorf("icons: ico entry of %d px", s)
		}
		dim := uint8(s % 256) // 256 is written as 0
		binary.Write(&b, le, struct {
			W, H, Colors, Reserved uint8
			Planes, BitCount       uint16
			Size, Offset           uint32
		}{dim, dim, 0, 0, 1, 32, uint32(len(p)), uint32(offset)})
		offset += len(p)
	}
	for _, p := range pngs {
		b.Write(p)
	}
	return b.Bytes(), nil
}
