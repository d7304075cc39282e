package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Log file rotation: the current file and logKeep older ones (file.1 the
// newest), each at most about logMaxBytes.
const (
	logMaxBytes = 10 << 20
	logKeep     = 3
)

// rotatingFile is the log_file writer. Under launchd or a Windows Run key
// nothing rotates standard error, so the daemon writes its log itself and
// rotates it by size, renaming file → file.1 → … → file.<keep>, the
// oldest removed. Rotation happens in Write, before the write that would
// pass the size, so a test (or a person) sees exactly keep+1 files. Every
// file is 0600: logs name rooms, users and servers.
type rotatingFile struct {
	mu       sync.Mutex
	path     string
	maxBytes int64
	keep     int
	f        *os.File // nil after a failed reopen; the next Write retries
	size     int64
}

func openRotatingFile(path string, maxBytes int64, keep int) (*rotatingFile, error) {
	r := &rotatingFile{path: path, maxBytes: maxBytes, keep: max(keep, 1)}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := r.openLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) openLocked() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	// A file left by an older install (launchd created it 0644) is
	// tightened too.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil && r.size > 0 && r.size+int64(len(p)) > r.maxBytes {
		r.rotateLocked()
	}
	if r.f == nil {
		if err := r.openLocked(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotateLocked shifts the old files up by one and starts a new file. A
// rename that fails (a file held open elsewhere on Windows) leaves the
// log growing in place rather than losing lines.
func (r *rotatingFile) rotateLocked() {
	r.f.Close()
	r.f = nil
	os.Remove(fmt.Sprintf("%s.%d", r.path, r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
	}
	os.Rename(r.path, r.path+".1")
	// openLocked (called by Write) creates the new file, or reopens the
	// old one if the rename failed.
}

func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
