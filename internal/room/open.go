package room

import (
	"fmt"
	"sync/atomic"

	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

// Stack is a store, the notifier its commits advance and the room engine
// over both: what the daemon and every test that needs rooms open
// together. Everything that follows the stream (/sync, push, the search
// index, the federation and appservice queues) waits on Notifier.
type Stack struct {
	DB       *store.DB
	Notifier *stream.Notifier
	Engine   *Engine
}

// Options say how Open opens the store and builds the engine.
type Options struct {
	// Path is the bbolt file, opened with store.Open unless OpenStore is
	// set.
	Path string
	// Store is passed to the store's opening. Its OnCommit, when set,
	// runs on every commit before the notifier moves, its Wake before
	// the notifier wakes its waiters.
	Store store.Options
	// OpenStore, when set, opens the store in place of store.Open(Path):
	// the daemon's tells a damaged file or a full disk apart and settles
	// the server name there, which it writes into the engine's config.
	// Its commits move no stream position and wake nobody (the notifier
	// does not exist yet).
	OpenStore func(opts store.Options, engine *Config) (*store.DB, error)
	// Engine is the engine's config.
	Engine Config
}

// Open opens the store, makes the notifier at the store's position with
// every later commit advancing it, and builds the engine over both. The
// caller closes Stack.DB when done (after whatever writes through it).
func Open(opts Options) (*Stack, error) {
	// The notifier starts at the position read after opening, so commits
	// made while opening find none and wake nobody.
	var notifier atomic.Pointer[stream.Notifier]
	so := opts.Store
	extra := so.OnCommit
	so.OnCommit = func(pos uint64) {
		if extra != nil {
			extra(pos)
		}
		if n := notifier.Load(); n != nil {
			n.Move(pos)
		}
	}
	extraWake := so.Wake
	so.Wake = func() {
		if extraWake != nil {
			extraWake()
		}
		if n := notifier.Load(); n != nil {
			n.Wake()
		}
	}
	cfg := opts.Engine
	var db *store.DB
	var err error
	if opts.OpenStore != nil {
		db, err = opts.OpenStore(so, &cfg)
	} else {
		db, err = store.Open(opts.Path, so)
	}
	if err != nil {
		return nil, err
	}
	var pos uint64
	if err := db.View(func(tx *store.Tx) error { pos = tx.Pos(); return nil }); err != nil {
		db.Close()
		return nil, fmt.Errorf("room: read the stream position: %w", err)
	}
	n := stream.New(pos)
	notifier.Store(n)
	return &Stack{DB: db, Notifier: n, Engine: New(db, n, cfg)}, nil
}
