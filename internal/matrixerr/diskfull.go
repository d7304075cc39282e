package matrixerr

import (
	"errors"
	"net/http"
	"strings"
	"syscall"
)

// DiskFull is the answer to a write the OS refused for lack of space: the
// data is not stored, and retrying once space is freed will work.
//
// The spec has no errcode for it. M_RESOURCE_LIMIT_EXCEEDED means a limit
// imposed on the server by its host and MUST carry an admin_contact, which
// a personal server has none of (its admin is the person reading the
// error), and clients show it as a hosting-plan banner. So: M_UNKNOWN,
// with HTTP 507 Insufficient Storage (RFC 4918 §11.5: the server cannot
// store what the request needs), a 5xx that clients treat as "try again
// later", and a message that names the cause.
func DiskFull() *Error {
	return &Error{Status: http.StatusInsufficientStorage, Code: "M_UNKNOWN",
		Message: "the disk holding Hearth's data is full"}
}

// IsDiskFull reports whether err is the OS saying the disk, or the
// user's quota on it, is full (ENOSPC, EDQUOT, Windows' ERROR_DISK_FULL).
// Some layers (bbolt growing its file) keep only the text of the error,
// so the text is checked too.
func IsDiskFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"no space left on device", "disk quota exceeded", "not enough space on the disk"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
