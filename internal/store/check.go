package store

import (
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckReport is what Check found in a file.
type CheckReport struct {
	Path      string
	FileBytes int64    // the file's size on disk
	Pages     int64    // pages in use up to the high-water mark
	PageSize  int      // bytes per page
	Problems  []string // each inconsistency bbolt's check reported; none for a sound file
}

// Check verifies the file at path page by page (bbolt's Tx.Check: every
// page reachable once, no page both free and in use, keys in order) without
// changing it. It opens the file read-only with a shared lock, so a daemon
// holding the file makes it fail with ErrLocked after lockTimeout rather
// than check pages being rewritten under it. A file that does not even
// open (empty, truncated, bad meta pages) gives ErrDamaged, like Open.
func Check(path string, lockTimeout time.Duration) (*CheckReport, error) {
	if lockTimeout <= 0 {
		lockTimeout = 500 * time.Millisecond
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: nothing to check: %w", err)
	}
	if err := precheck(path, lockTimeout); err != nil {
		return nil, err
	}
	b, err := openReadOnly(path, lockTimeout)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	rep := &CheckReport{Path: path, PageSize: b.Info().PageSize}
	err = b.View(func(tx *bolt.Tx) error {
		rep.FileBytes = fileSize(path)
		rep.Pages = tx.Size() / int64(rep.PageSize)
		for err := range tx.Check() {
			rep.Problems = append(rep.Problems, err.Error())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: check %s: %w", path, err)
	}
	return rep, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
