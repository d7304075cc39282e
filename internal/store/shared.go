package store

// Shared returns the value kept on db under key, made by mk on its first
// use. It is for in-memory state that every user of one open file must
// see alike and that must go with the DB, such as account's cache of
// resolved access tokens, which revocations through any Accounts value
// over this DB empty. key should be an unexported type of the caller's
// package, as with context keys.
func (db *DB) Shared(key any, mk func() any) any {
	if v, ok := db.shared.Load(key); ok {
		return v
	}
	v, _ := db.shared.LoadOrStore(key, mk())
	return v
}
