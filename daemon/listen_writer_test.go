package daemon

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDeadlineWriterArmsBeforeBytesGoOut: a response's write deadline is
// set by what sends bytes (a write, a flush through
// http.ResponseController, a 1xx header), not by a final status alone,
// which net/http sends only with the body or after the handler.
func TestDeadlineWriterArmsBeforeBytesGoOut(t *testing.T) {
	for name, c := range map[string]struct {
		do    func(w http.ResponseWriter)
		armed bool
	}{
		"status only":   {func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }, false},
		"write":         {func(w http.ResponseWriter) { w.Write([]byte("x")) }, true},
		"flush":         {func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK); http.NewResponseController(w).Flush() }, true},
		"informational": {func(w http.ResponseWriter) { w.WriteHeader(http.StatusEarlyHints) }, true},
	} {
		rec := httptest.NewRecorder()
		dw := &deadlineWriter{ResponseWriter: rec, rc: http.NewResponseController(rec), limits: defaultNetLimits()}
		c.do(dw)
		if dw.armed != c.armed {
			t.Errorf("%s: armed %v, want %v", name, dw.armed, c.armed)
		}
		if name == "flush" && !rec.Flushed {
			t.Errorf("flush: the flush did not reach the server's writer")
		}
	}
}
