package federation

import (
	"bytes"
	"io"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/fclient"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// An inbound transaction's X-Matrix signature covers its whole body, made
// canonical: about as much CPU as a tenth of its events' own checks, on
// one core, before any of them could start. /send therefore checks it
// beside the events' checks rather than before them (handleBeside): the
// peer waits for each transaction's answer before it sends the next
// (Server-Server API §"Transactions": one in flight per destination), so
// every millisecond of a transaction's path is a millisecond of the
// ingest rate.
//
// Until the signature has passed, the handler may only compute and read:
// parse the body, parse and hash the events, read rooms, ACLs and cached
// keys, verify event signatures with keys already cached. Before it
// stores, fetches (a key, an event), holds an event for a join in flight,
// or answers, it waits for the request's check (request.authenticated),
// and if that failed it answers with the check's error, as handle would
// have before reading the body. What an unauthenticated peer can make it
// do is what handle already lets it: read a body within MaxBodyBytes and
// spend CPU on it, with failed signatures counted against its address.

// pendingAuth is the X-Matrix check of one request, running beside its
// handler.
type pendingAuth struct {
	done chan struct{}
	err  error
}

func (a *pendingAuth) wait() error {
	<-a.done
	return a.err
}

// authenticated waits for the request's X-Matrix check where it runs
// beside the handler (nil: passed); for other routes it has passed
// already.
func (r *request) authenticated() error {
	if r.auth == nil {
		return nil
	}
	return r.auth.wait()
}

// handleBeside is handle with the request's signature checked beside h
// instead of before it; h must call r.authenticated before any effect or
// answer (see above). What can be refused from the headers alone still
// is, before the body is read.
func (s *Service) handleBeside(pattern string, h func(http.ResponseWriter, *request) error) {
	s.mux.Handle(pattern, matrixerr.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		origin, client, err := s.admit(w, r)
		if err != nil {
			return err
		}
		body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		// The check reads the same bytes, and the same read error, as it
		// would have from the connection.
		vr := r.Clone(r.Context())
		vr.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{readErr}))
		a := &pendingAuth{done: make(chan struct{})}
		go func() {
			defer close(a.done)
			if readErr == nil {
				if fr, ok := verifyRequestSig(r.Context(), vr, body, s.now(), s.cfg.ServerName, s.cfg.KeyRing); ok { // send_auth_sig.go
					a.err = s.authenticated(r, client, fr, http.StatusOK, nil)
					return
				}
			}
			fr, resp := fclient.VerifyHTTPRequest(vr, s.now(), s.cfg.ServerName, nil, s.cfg.KeyRing)
			a.err = s.authenticated(r, client, fr, resp.Code, resp.JSON)
		}()
		if readErr != nil {
			// The check fails on the read error and says so.
			if err := a.wait(); err != nil {
				return err
			}
			return matrixerr.NotJSON("the request body could not be read")
		}
		herr := h(w, &request{Request: r, origin: origin, body: body, auth: a})
		if err := a.wait(); err != nil {
			return err // h has answered nothing (it waited for this)
		}
		return herr
	}))
}

// errReader is a body's read error after its bytes (nil: io.EOF).
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}
