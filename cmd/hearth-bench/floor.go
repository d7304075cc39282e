package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The floor server is the sync section's reference: the least a
// homeserver could do for the delivery row and still keep its promises,
// run by the same clients in the same shape, so a reader can tell what the
// machine costs (a durable commit, 50 HTTP responses and their clients'
// decoding on the same cores) from what Hearth adds. It is this binary
// run as `hearth-bench floor-serve DIR ADDR`, a process of its own as a
// daemon is.
//
// What it does per message: the send is durable before anyone sees it
// (one bbolt transaction, fsynced like Hearth's store, holding the event
// and its transaction ID), then every long poll of the span answers with
// the same bytes, encoded once, in the skeleton Hearth writes for such a
// span. What it leaves out: authentication beyond the header's presence,
// rooms, membership, event building and signing, push rules and counts,
// per-user and per-device sections.
const floorRoom = "!floor:bench.local"

// floorMain runs the floor server on addr with its bbolt file in dir,
// until the process is killed.
func floorMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hearth-bench floor-serve DIR ADDR")
		return 2
	}
	s, err := openFloor(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	ln, err := net.Listen("tcp", args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "floor:", (&http.Server{Handler: s.routes()}).Serve(ln))
	return 1
}

type floorServer struct {
	db     *bolt.DB
	sendMu sync.Mutex // one send at a time, as a room's sequencer

	mu     sync.Mutex
	events [][]byte          // event JSON by stream position − 1
	wake   chan struct{}     // closed when an event is added
	bodies map[uint64][]byte // since → response, for the current position
}

var floorEvents, floorTxns = []byte("events"), []byte("txns")

func openFloor(dir string) (*floorServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "floor.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{floorEvents, floorTxns} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("buckets: %w", err)
	}
	return &floorServer{db: db, wake: make(chan struct{}), bodies: map[uint64][]byte{}}, nil
}

func (s *floorServer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/client/versions", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"versions":["v1.11"]}`)
	})
	mux.HandleFunc("GET /_matrix/client/v3/sync", s.authed(s.sync))
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", s.authed(s.send))
	return mux
}

func (s *floorServer) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Get("Authorization")) <= len("Bearer ") {
			http.Error(w, `{"errcode":"M_MISSING_TOKEN","error":"no token"}`, http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// send stores the event and its transaction ID in one transaction (a
// repeated transaction ID gets the event it named), then wakes the polls.
func (s *floorServer) send(w http.ResponseWriter, r *http.Request) {
	content, err := io.ReadAll(io.LimitReader(r.Body, 65536))
	if err != nil || !json.Valid(content) {
		http.Error(w, `{"errcode":"M_NOT_JSON","error":"bad body"}`, http.StatusBadRequest)
		return
	}
	txn := []byte(r.Header.Get("Authorization") + "\x00" + r.PathValue("txn"))
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	pos := uint64(len(s.events)) + 1
	s.mu.Unlock()
	ev, err := json.Marshal(map[string]any{"content": json.RawMessage(content), "event_id": "$floor" + strconv.FormatUint(pos, 10),
		"origin_server_ts": time.Now().UnixMilli(), "sender": "@floor:bench.local", "type": r.PathValue("type")})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], pos)
	var seen uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		if v := tx.Bucket(floorTxns).Get(txn); v != nil {
			seen = binary.BigEndian.Uint64(v)
			return nil
		}
		if err := tx.Bucket(floorEvents).Put(key[:], ev); err != nil {
			return err
		}
		return tx.Bucket(floorTxns).Put(txn, key[:])
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if seen != 0 {
		fmt.Fprintf(w, `{"event_id":"$floor%d"}`, seen)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.bodies = map[uint64][]byte{}
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
	fmt.Fprintf(w, `{"event_id":"$floor%d"}`, pos)
}

// sync answers at once when the span after since holds an event (or for
// an initial sync), else waits for one or the timeout.
func (s *floorServer) sync(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "f"), 10, 64)
		if err != nil {
			http.Error(w, `{"errcode":"M_INVALID_PARAM","error":"bad since"}`, http.StatusBadRequest)
			return
		}
		since = n
	}
	ms, _ := strconv.Atoi(q.Get("timeout"))
	expired := time.After(time.Duration(ms) * time.Millisecond)
	for {
		s.mu.Lock()
		pos, wake := uint64(len(s.events)), s.wake
		if since > pos {
			s.mu.Unlock()
			http.Error(w, `{"errcode":"M_INVALID_PARAM","error":"since from the future"}`, http.StatusBadRequest)
			return
		}
		var body []byte
		if initial := q.Get("since") == ""; initial || since < pos {
			body = s.body(since, !initial)
		}
		s.mu.Unlock()
		if body == nil {
			select {
			case <-wake:
				continue
			case <-expired:
				s.mu.Lock()
				body = s.body(since, true)
				s.mu.Unlock()
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		return
	}
}

// body is the response for the span after since (incremental), or an
// initial sync's, which holds no event; s.mu is held. An incremental one
// is encoded once per position and since.
func (s *floorServer) body(since uint64, incremental bool) []byte {
	if b, ok := s.bodies[since]; ok && incremental {
		return b
	}
	pos := uint64(len(s.events))
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"next_batch":"f%d","rooms":{"join":{`, pos)
	if incremental && since < pos {
		fmt.Fprintf(&b, `%q:{"timeline":{"events":[%s],"limited":false,"prev_batch":"t%d"},"state":{"events":[]},`+
			`"account_data":{"events":[]},"ephemeral":{"events":[]},"summary":{},`+
			`"unread_notifications":{"highlight_count":0,"notification_count":%d}}`,
			floorRoom, bytes.Join(s.events[since:pos], []byte(",")), since, pos-since)
	}
	b.WriteString(`},"invite":{},"leave":{},"knock":{}},"presence":{"events":[]},"account_data":{"events":[]},` +
		`"to_device":{"events":[]},"device_lists":{"changed":[],"left":[]},"device_one_time_keys_count":{},` +
		`"device_unused_fallback_key_types":[]}` + "\n")
	if incremental {
		s.bodies[since] = b.Bytes()
	}
	return b.Bytes()
}

// startFloor starts the floor server as a child process, like a daemon.
func (b *bench) startFloor(ctx context.Context) (*daemon, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d, logf, err := b.newDaemonDir("http://" + addr)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d, _, err = b.launch(ctx, d, logf, []string{self, "floor-serve", d.dataDir, addr})
	if err != nil {
		return nil, errors.Join(errors.New("floor server"), err)
	}
	return d, nil
}
