package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestOldLogLayoutSameAnswers stores notifications in two rooms, takes
// the answers (counts, every page of GET /notifications with and without
// only=highlight, the rooms notified since a point), then rewrites the
// file as schema 2 wrote it — JSON records in pushlog, the same
// notifications again in pushfeed — and reopens it: the store's
// migration drops pushfeed, and push must give the same answers from
// the old records (Issue 15).
func TestOldLogLayoutSameAnswers(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir)
	owner, members := user("owner"), names("m", 3)
	rooms := []string{e.publicRoom(t, owner, members), e.publicRoom(t, owner, members)}
	s := New(e.db, e.rooms, Options{})
	from, _ := e.rooms.Pos()
	var mid uint64
	for i := range 12 {
		roomID := rooms[i%2]
		content := text(fmt.Sprintf("message %d", i))
		switch i % 4 {
		case 1:
			content["m.mentions"] = map[string]any{"user_ids": []string{owner}}
		case 2:
			content["msgtype"] = "m.notice" // no notification
		}
		root := e.say(t, members[i%3], roomID, fmt.Sprint("t", i), content)
		if i == 5 {
			reply := text("in a thread")
			reply["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": root}
			e.say(t, members[0], roomID, "thread", reply)
			mid, _ = e.rooms.Pos()
		}
	}
	to, _ := e.rooms.Pos()
	for pos := from; pos < to; {
		next, err := s.processBatch(context.Background(), pos, to)
		if err != nil {
			t.Fatal(err)
		}
		pos = next
	}
	before := logAnswers(t, s, owner, rooms, mid, to)
	if n := len(before["highlights"].([]Notification)); n != 3 {
		t.Fatalf("%d highlights stored, want 3", n)
	}
	e.db.Close()

	path := filepath.Join(dir, "hearth.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	err = old.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket(store.PushLog)
		feed, err := tx.CreateBucket([]byte("pushfeed"))
		if err != nil {
			return err
		}
		type kv struct{ k, v []byte }
		var all []kv
		err = log.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v, true)
			if err != nil {
				return err
			}
			b, err := json.Marshal(record{EventID: "$old", Actions: r.Actions, Highlight: r.Highlight, Thread: r.Thread, TS: r.TS})
			if err != nil {
				return err
			}
			all = append(all, kv{bytes.Clone(k), b})
			return nil
		})
		if err != nil {
			return err
		}
		for _, x := range all {
			userID, rest, _ := bytes.Cut(x.k, []byte{0})
			roomID := rest[:len(rest)-9]
			pos := rest[len(rest)-8:]
			if err := log.Put(x.k, x.v); err != nil {
				return err
			}
			if err := feed.Put(append(append(bytes.Clone(userID), 0), pos...), bytes.Clone(roomID)); err != nil {
				return err
			}
			records++
		}
		return tx.Bucket(store.Meta).Put([]byte("schema"), store.PutU64(2))
	})
	old.Close()
	if err != nil || records == 0 {
		t.Fatalf("rewrite as schema 2: %d records, %v", records, err)
	}

	e = openEnv(t, dir)
	after := logAnswers(t, New(e.db, e.rooms, Options{}), owner, rooms, mid, to)
	e.db.Close()
	if !reflect.DeepEqual(before, after) {
		t.Errorf("answers from the old layout differ:\nbefore %+v\nafter  %+v", before, after)
	}
	check, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	check.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("pushfeed")) != nil {
			t.Error("pushfeed is still in the file after the migration")
		}
		return nil
	})
}

// logAnswers collects what clients read from the log.
func logAnswers(t *testing.T, s *Service, userID string, rooms []string, mid, evaluated uint64) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, roomID := range rooms {
		c, err := s.Counts(userID, roomID, nil)
		if err != nil {
			t.Fatal(err)
		}
		out["counts "+roomID] = c
	}
	for _, only := range []bool{false, true} {
		var pages [][]Notification
		for from, n := uint64(0), 0; ; n++ {
			page, next, err := s.Notifications(userID, from, 2, only)
			if err != nil || n > 20 {
				t.Fatalf("notifications from %d: %v (page %d)", from, err, n)
			}
			for i := range page {
				page[i].Actions = nil // compared through their JSON below
			}
			pages = append(pages, page)
			if next == 0 {
				break
			}
			from = next
		}
		out[fmt.Sprint("pages ", only)] = pages
	}
	all, _, err := s.Notifications(userID, 0, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, n := range all {
		b, _ := json.Marshal(n.Actions)
		actions = append(actions, string(b))
	}
	out["highlights"] = all
	out["highlight actions"] = actions
	for _, since := range []uint64{0, mid} {
		notified, err := s.RoomsNotified(userID, since, &Live{Evaluated: evaluated})
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprint("notified since ", since)] = notified
	}
	return out
}
