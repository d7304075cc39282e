package store

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged matches (errors.Is) the error Open returns for a file that is
// not a whole bbolt file: empty, truncated, or with unreadable meta pages.
var ErrDamaged = errors.New("the data file is damaged")

// DamagedError says which file is damaged and how; its text is one line
// that tells the person what to do.
type DamagedError struct {
	Path   string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged (%s): run 'hearth check' to see what is wrong, or restore the file from a backup",
		e.Path, e.Reason)
}

func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// precheck refuses a file that bbolt would misread or that would fault
// once mapped. bbolt validates the meta pages itself, but a file cut short
// after them maps without complaint and the first read of a page past the
// end raises SIGBUS, which kills the process with a goroutine dump. So the
// file is opened read-only first (which reads no page but the metas) and
// its size compared with the high-water page the meta records. This costs
// one stat and one map, whatever the file's size; the full page-by-page
// check is 'hearth check' (Check), too slow for every start.
//
// A missing file is fine (Open creates it). An empty one is not: bbolt
// would silently start a new database over what was there.
func precheck(path string, lockTimeout time.Duration) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if fi.Size() == 0 {
		return &DamagedError{Path: path, Reason: "the file is empty; if nothing was ever stored in it, delete it"}
	}
	b, err := openReadOnly(path, lockTimeout)
	if err != nil {
		return err
	}
	defer b.Close()
	var high int64
	b.View(func(tx *bolt.Tx) error { high = tx.Size(); return nil })
	if fi.Size() < high {
		return &DamagedError{Path: path, Reason: fmt.Sprintf("truncated: %d bytes, but its pages reach byte %d", fi.Size(), high)}
	}
	return nil
}

// openReadOnly opens path read-only with a shared lock. Any failure to
// read the meta pages is ErrDamaged; a fault on the mapping becomes an
// error too (SetPanicOnFault), as a last defence against a file whose
// damage the checks above did not foresee.
func openReadOnly(path string, lockTimeout time.Duration) (b *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, &DamagedError{Path: path, Reason: fmt.Sprint("reading it faulted: ", r)}
		}
	}()
	b, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: %s: %w", path, ErrLocked)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("store: %w", err)
	case err != nil:
		return nil, &DamagedError{Path: path, Reason: err.Error()}
	}
	return b, nil
}
