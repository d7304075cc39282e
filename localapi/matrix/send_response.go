package matrix

import (
	"net/http"
	"strconv"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// writeEventID answers a send with {"event_id": id} (Client-Server API
// §"PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"),
// appended directly with its length rather than through a map and
// encoding/json: the answer to every message sent, and its encoder was
// a visible part of a send's HTTP cost (docs/performance.md "A send's CPU
// off the writer"). An ID that would need escaping (none does: event IDs
// are a sigil and base64, or localpart:server) takes the general path.
func writeEventID(w http.ResponseWriter, id string) {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"event_id": id})
			return
		}
	}
	b := make([]byte, 0, len(id)+16)
	b = append(b, `{"event_id":"`...)
	b = append(b, id...)
	b = append(b, "\"}\n"...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
