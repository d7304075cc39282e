package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// TestFileResponseInChunks: a media download goes through the listener's
// ReadFrom pass-throughs (deadlineWriter, limitConn) a megabyte at a
// time, so the kernel can send the file. Whole files and byte ranges that
// start and end inside chunks must arrive exactly.
func TestFileResponseInChunks(t *testing.T) {
	d, _ := startNetDaemon(t, netLimits{write: 10 * time.Second, idle: time.Hour})
	c := owner(t, d, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	up, err := c.UploadBytes(ctx, data, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.DownloadBytes(ctx, up.ContentURI)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("whole file: got %d bytes, want %d, equal %v", len(got), len(data), bytes.Equal(got, data))
	}
	for _, r := range [][2]int{{1<<20 - 5, 2<<20 + 9}, {7, 7}, {3 << 20, len(data) - 1}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("http://%s/_matrix/client/v1/media/download/%s/%s", d.Addr(), up.ContentURI.Homeserver, up.ContentURI.FileID), nil)
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", r[0], r[1]))
		resp, err := c.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("range %v: status %d, err %v", r, resp.StatusCode, err)
		}
		if !bytes.Equal(body, data[r[0]:r[1]+1]) {
			t.Fatalf("range %v: got %d bytes, want %d, not the same", r, len(body), r[1]+1-r[0])
		}
	}
}
