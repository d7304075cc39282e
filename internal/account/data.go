package account

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// ChangeAccountData is the change-log kind for account data writes.
const ChangeAccountData = "account_data"

// PutAccountData stores global (roomID "") or per-room account data
// (Client-Server API §"Client Config") and logs the change for /sync.
func (a *Accounts) PutAccountData(ctx context.Context, localpart, roomID, typ string, content json.RawMessage) error {
	return a.db.Update(ctx, func(tx *store.Tx) error {
		if err := tx.Put(store.AccountData, store.Key(localpart, roomID, typ), content); err != nil {
			return err
		}
		_, err := tx.AppendChange(store.Change{Kind: ChangeAccountData, Localpart: localpart, RoomID: roomID, Key: typ})
		return err
	})
}

// AccountData returns one item, or M_NOT_FOUND.
func (a *Accounts) AccountData(localpart, roomID, typ string) (json.RawMessage, error) {
	var out json.RawMessage
	err := a.db.View(func(tx *store.Tx) error {
		out = GetAccountData(tx, localpart, roomID, typ)
		if out == nil {
			return matrixerr.NotFound("account data not found")
		}
		return nil
	})
	return out, err
}

// GetAccountData reads one item inside a transaction; nil if absent.
func GetAccountData(tx *store.Tx, localpart, roomID, typ string) json.RawMessage {
	b := tx.Get(store.AccountData, store.Key(localpart, roomID, typ))
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

// AllAccountData calls fn for every item of the user in scope roomID ("" for
// global).
func AllAccountData(tx *store.Tx, localpart, roomID string, fn func(typ string, content json.RawMessage)) {
	prefix := store.Key(localpart, roomID, "")
	c := tx.Cursor(store.AccountData)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		fn(string(k[len(prefix):]), append(json.RawMessage(nil), v...))
	}
}

// PutFilter stores a filter and returns its ID (Client-Server API §"Filtering").
func (a *Accounts) PutFilter(ctx context.Context, localpart string, filter json.RawMessage) (string, error) {
	var id string
	err := a.db.Update(ctx, func(tx *store.Tx) error {
		n, err := tx.NextID(store.Filters)
		if err != nil {
			return err
		}
		id = strconv.FormatUint(n, 10)
		return tx.Put(store.Filters, store.Key(localpart, id), filter)
	})
	return id, err
}

// Filter returns a stored filter or M_NOT_FOUND.
func (a *Accounts) Filter(localpart, id string) (json.RawMessage, error) {
	var out json.RawMessage
	err := a.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Filters, store.Key(localpart, id))
		if b == nil {
			return matrixerr.NotFound("no such filter")
		}
		out = append(out, b...)
		return nil
	})
	return out, err
}

// AccountDataSince returns the account data events that changed in
// (from, to], or all of them when from is 0, split into global and per-room.
// Each event is {"type", "content"}.
func (a *Accounts) AccountDataSince(localpart string, from, to uint64) ([]json.RawMessage, map[string][]json.RawMessage, error) {
	global := []json.RawMessage{}
	perRoom := map[string][]json.RawMessage{}
	add := func(roomID, typ string, content json.RawMessage) {
		ev, _ := json.Marshal(map[string]any{"type": typ, "content": content})
		if roomID == "" {
			global = append(global, ev)
		} else {
			perRoom[roomID] = append(perRoom[roomID], ev)
		}
	}
	err := a.db.View(func(tx *store.Tx) error {
		if from == 0 {
			prefix := store.Key(localpart, "")
			c := tx.Cursor(store.AccountData)
			for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
				roomID, typ, _ := strings.Cut(string(k[len(prefix):]), "\x00")
				add(roomID, typ, append(json.RawMessage(nil), v...))
			}
			return nil
		}
		seen := map[string]bool{}
		return tx.ChangesSince(from, to, func(_ uint64, c store.Change) error {
			k := c.RoomID + "\x00" + c.Key
			if c.Kind != ChangeAccountData || c.Localpart != localpart || seen[k] {
				return nil
			}
			seen[k] = true
			if content := GetAccountData(tx, localpart, c.RoomID, c.Key); content != nil {
				add(c.RoomID, c.Key, content)
			}
			return nil
		})
	})
	return global, perRoom, err
}
