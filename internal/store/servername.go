package store

import "context"

// keyServerName in meta holds the Matrix server name the file's data was
// written under. Every user ID, event and signature in the file carries
// it, so the daemon refuses to serve the file under another name.
var keyServerName = []byte("server_name")

// ServerName is the server name recorded in the file: "" for a new file,
// or one written before Hearth recorded it (schema 2 without the key).
func (db *DB) ServerName() (string, error) {
	var name string
	err := db.View(func(tx *Tx) error {
		name = string(tx.Get(Meta, keyServerName))
		return nil
	})
	return name, err
}

// RecordServerName records name as the file's server name, unless one is
// recorded already; it returns the name the file now holds.
func (db *DB) RecordServerName(ctx context.Context, name string) (string, error) {
	var held string
	err := db.Update(ctx, func(tx *Tx) error {
		held = string(tx.Get(Meta, keyServerName))
		if held != "" {
			return nil
		}
		held = name
		return tx.Put(Meta, keyServerName, []byte(name))
	})
	return held, err
}
