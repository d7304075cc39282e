package matrixerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
)

// TestWriteDiskFull: a write the disk had no room for becomes 507 with the
// message naming the cause, whether the OS error is wrapped (a media file,
// the store's commit) or only its text survived (bbolt growing its file);
// other internal errors stay a bare 500.
func TestWriteDiskFull(t *testing.T) {
	cases := []struct {
		err    error
		status int
	}{
		{fmt.Errorf("store: commit: %w", &os.PathError{Op: "write", Path: "hearth.db", Err: syscall.ENOSPC}), http.StatusInsufficientStorage},
		{fmt.Errorf("store: commit: %w", errors.New("file resize error: no space left on device")), http.StatusInsufficientStorage},
		{errors.New("disk quota exceeded"), http.StatusInsufficientStorage},
		{errors.New("something else"), http.StatusInternalServerError},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		Write(rec, c.err)
		var body map[string]string
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != c.status || body["errcode"] != "M_UNKNOWN" {
			t.Errorf("%v: %d %v, want %d M_UNKNOWN", c.err, rec.Code, body, c.status)
		}
		if c.status == http.StatusInsufficientStorage && body["error"] != "the disk holding Hearth's data is full" {
			t.Errorf("%v: message %q", c.err, body["error"])
		}
	}
}
