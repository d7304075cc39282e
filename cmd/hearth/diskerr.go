package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/hearth-chat/hearth/daemon"
)

// diskError is a start that failed because the disk under the data dir
// refuses writes: read-only (a live USB stick, a disk remounted read-only
// after errors) or full. Such a start has changed nothing (the file
// system refused it), so the message says that and what to do, and it
// exits like any data dir that cannot be used as it is (exit code 5).
type diskError struct {
	msg string
	err error
}

func (e *diskError) Error() string        { return e.msg }
func (e *diskError) Unwrap() error        { return e.err }
func (e *diskError) Is(target error) bool { return target == daemon.ErrDataDir }

// asDiskError turns a read-only or full disk under dataDir into a
// diskError; other errors pass unchanged.
func asDiskError(dataDir string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return &diskError{fmt.Sprintf("the data dir %s is on a read-only disk, and Hearth must write there. "+
			"Nothing in it was changed: make the disk writable, or start Hearth with another --data-dir. (%v)", dataDir, err), err}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &diskError{fmt.Sprintf("the disk holding the data dir %s is full (or over its quota). "+
			"Nothing stored was lost: free some space there and start Hearth again. (%v)", dataDir, err), err}
	}
	return err
}
