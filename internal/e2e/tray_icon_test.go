package e2e

import (
	"testing"

	"github.com/godbus/dbus/v5"
)

// TestTrayIcon reads the tray's icon the way a panel does, from the
// StatusNotifierItem's IconPixmap property: Hearth's 64 px icon, opaque in
// the middle, so the panel shows the flame rather than an empty square.
func TestTrayIcon(t *testing.T) {
	d := StartDaemon(t)
	ui := startTray(t, d)
	v, err := ui.item.GetProperty("org.kde.StatusNotifierItem.IconPixmap")
	noErr(t, err, "IconPixmap")
	var pixmaps []struct {
		W, H int32
		Pix  []byte
	}
	noErr(t, dbus.Store([]any{v.Value()}, &pixmaps), "IconPixmap %s", v.Signature())
	if len(pixmaps) != 1 || pixmaps[0].W != 64 || pixmaps[0].H != 64 || len(pixmaps[0].Pix) != 64*64*4 {
		t.Fatalf("IconPixmap: %d bitmaps, want one 64×64 ARGB32", len(pixmaps))
	}
	// ARGB32 in network byte order: the alpha of the centre pixel.
	if a := pixmaps[0].Pix[(32*64+32)*4]; a != 0xff {
		t.Errorf("centre pixel alpha %d: the icon is empty", a)
	}
}
