package icons

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"testing"
)

// The committed PNGs and hearth.ico are what Render draws now: a change to
// the drawing without `go generate ./packaging/icons` fails here.
func TestCommittedIcons(t *testing.T) {
	for _, s := range Sizes {
		got, err := PNG(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("hearth-%d.png is out of date: run go generate ./packaging/icons", s)
		}
		img, err := png.Decode(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("hearth-%d.png: %v", s, err)
		}
		if b := img.Bounds(); b.Dx() != s || b.Dy() != s {
			t.Errorf("hearth-%d.png is %v", s, b)
		}
		// Opaque in the middle, transparent in the corner (rounded square).
		if _, _, _, a := img.At(s/2, s/2).RGBA(); a != 0xffff {
			t.Errorf("%d px: centre alpha %d", s, a)
		}
		if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
			t.Errorf("%d px: corner alpha %d", s, a)
		}
	}
	var pngs [][]byte
	for _, s := range ICOSizes {
		p, _ := Encode(s)
		pngs = append(pngs, p)
	}
	want, err := ICO(ICOSizes, pngs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ICOFile(), want) {
		t.Error("hearth.ico is out of date: run go generate ./packaging/icons")
	}
}

// TestICO reads the container back as Windows does: the header, then each
// entry's size and the PNG at its offset.
func TestICO(t *testing.T) {
	ico := ICOFile()
	le := binary.LittleEndian
	if le.Uint16(ico[0:]) != 0 || le.Uint16(ico[2:]) != 1 || int(le.Uint16(ico[4:])) != len(ICOSizes) {
		t.Fatalf("header % x", ico[:6])
	}
	for i, s := range ICOSizes {
		e := ico[6+16*i:]
		w := int(e[0])
		if w == 0 {
			w = 256
		}
		if w != s || int(e[1]) != s%256 {
			t.Errorf("entry %d: %d×%d, want %d", i, e[0], e[1], s)
		}
		size, off := le.Uint32(e[8:]), le.Uint32(e[12:])
		img, err := png.Decode(bytes.NewReader(ico[off : off+size]))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if img.Bounds().Dx() != s {
			t.Errorf("entry %d holds a %d px image", i, img.Bounds().Dx())
		}
	}
	if _, err := ICO([]int{512}, [][]byte{{1}}); err == nil {
		t.Error("a 512 px entry was accepted")
	}
}
