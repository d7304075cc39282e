//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// diskFullMessage is what Hearth says when the disk is full
// (matrixerr.DiskFull).
const diskFullMessage = "the disk holding Hearth's data is full"

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it when the test ends (after the daemon on it has stopped:
// cleanups run last-registered first).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// upload posts body to the media repository and returns the status and
// the decoded error, if any.
func upload(t *testing.T, c *mautrix.Client, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), "POST", c.HomeserverURL.String()+"/_matrix/media/v3/upload", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestDiskFull: on a data dir whose disk is full, a media upload and a
// send each get 507 M_UNKNOWN naming the cause (not 400 "could not read
// the upload" or a bare 500); once space is freed the same daemon sends
// again, and after a restart every acknowledged event is there and the
// refused one is not.
func TestDiskFull(t *testing.T) {
	dataDir := mountTmpfs(t, "48m")
	d := NewDaemon(t, dataDir)
	d.Start()
	alice := d.Register("alice")
	roomID := PublicRoom(t, alice)
	before := SendText(t, alice, roomID, "written before the disk filled")

	filler := filepath.Join(dataDir, "filler")
	fill(t, filler)

	status, resp := upload(t, alice, bytes.Repeat([]byte("m"), 1<<20))
	if status != http.StatusInsufficientStorage || resp["errcode"] != "M_UNKNOWN" || resp["error"] != diskFullMessage {
		t.Errorf("upload on a full disk: %d %v, want 507 M_UNKNOWN %q", status, resp, diskFullMessage)
	}

	// A large event needs pages past the file's end (its overflow pages
	// are contiguous, which the free list of a small file cannot offer),
	// so its commit writes where the disk has no room.
	big := strings.Repeat("full disk ", 5000)
	_, err := alice.SendMessageEvent(ctx(t), roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": big})
	wantMatrixErr(t, err, http.StatusInsufficientStorage, "M_UNKNOWN", "send on a full disk")
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil && he.RespError.Err != diskFullMessage {
		t.Errorf("send on a full disk said %q, want %q", he.RespError.Err, diskFullMessage)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after, err := alice.SendMessageEvent(ctx(t), roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": big})
	noErr(t, err, "send once space is freed")
	if status, resp := upload(t, alice, []byte("small file")); status != http.StatusOK {
		t.Errorf("upload once space is freed: %d %v", status, resp)
	}

	d.Restart()
	alice = d.Login("alice")
	var got []id.EventID
	bigOnes := 0
	for _, ev := range History(t, alice, roomID, "", 50) {
		got = append(got, ev.ID)
		if ev.Type == event.EventMessage && body(ev) == big {
			bigOnes++
		}
	}
	for _, want := range []id.EventID{before, after.EventID} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("acknowledged event %s is missing after the restart", want)
		}
	}
	if bigOnes != 1 {
		t.Errorf("%d copies of the large message after the restart, want 1 (the refused send must leave nothing)", bigOnes)
	}
}
