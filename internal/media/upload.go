package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Upload is one incoming file: its body and what the request said about it.
type Upload struct {
	Body          io.Reader
	ContentLength int64 // -1 when unknown
	ContentType   string
	Filename      string
}

// blobPath is where the file with this SHA-256 lives: two levels of
// fan-out keep directories small.
func (r *Repo) blobPath(sum string) string {
	return filepath.Join(r.cfg.Dir, sum[:2], sum[2:4], sum)
}

// Store uploads a new file (POST /_matrix/media/v3/upload) and returns its
// media ID.
func (r *Repo) Store(ctx context.Context, uploader string, up Upload) (string, error) {
	if err := r.precheck(uploader, up.ContentLength); err != nil {
		return "", err
	}
	tmp, sum, size, err := r.writeBlob(up.Body)
	if err != nil {
		return "", err
	}
	mediaID := newMediaID()
	rec := &Record{SHA256: sum, ContentType: cleanContentType(up.ContentType), Filename: up.Filename,
		Size: size, Uploader: uploader, Created: time.Now().UnixMilli()}
	err = r.commitBlob(ctx, tmp, sum, func(tx *store.Tx) error {
		if err := r.charge(tx, uploader, size); err != nil {
			return err
		}
		return putRecord(tx, mediaID, rec)
	})
	if err != nil {
		return "", err
	}
	return mediaID, nil
}

// StoreTo uploads the content of an ID made by Create (PUT
// /_matrix/media/v3/upload/{serverName}/{mediaId}).
func (r *Repo) StoreTo(ctx context.Context, uploader, mediaID string, up Upload) error {
	// Check before reading the body, so a wrong request costs no disk.
	if err := r.checkPending(uploader, mediaID); err != nil {
		return err
	}
	if err := r.precheck(uploader, up.ContentLength); err != nil {
		return err
	}
	tmp, sum, size, err := r.writeBlob(up.Body)
	if err != nil {
		return err
	}
	err = r.commitBlob(ctx, tmp, sum, func(tx *store.Tx) error {
		rec, err := pendingRecord(tx, uploader, mediaID) // again: another PUT may have won
		if err != nil {
			return err
		}
		if err := r.charge(tx, uploader, size); err != nil {
			return err
		}
		rec.SHA256, rec.Size, rec.ContentType, rec.Filename = sum, size, cleanContentType(up.ContentType), up.Filename
		rec.ExpiresAt = 0
		if err := tx.Delete(store.MediaPending, pendingKey(uploader, mediaID)); err != nil {
			return err
		}
		return putRecord(tx, mediaID, rec)
	})
	if err != nil {
		return err
	}
	r.wake()
	return nil
}

func (r *Repo) checkPending(uploader, mediaID string) error {
	return r.db.View(func(tx *store.Tx) error {
		_, err := pendingRecord(tx, uploader, mediaID)
		return err
	})
}

// pendingRecord returns the record an async upload may fill, or the spec's
// error: 404 for unknown or expired IDs, 403 for another user's, 409 once
// content is there.
func pendingRecord(tx *store.Tx, uploader, mediaID string) (*Record, error) {
	rec, err := getRecord(tx, mediaID)
	if err != nil {
		return nil, err
	}
	switch {
	case !rec.Pending():
		return nil, errCannotOverwrite()
	case rec.Uploader != uploader:
		return nil, matrixerr.Forbidden("this media ID was created by another user")
	case rec.ExpiresAt <= time.Now().UnixMilli():
		return nil, matrixerr.NotFound("this media ID has expired")
	}
	return rec, nil
}

// precheck refuses, before anything is read, a body whose declared length
// is over the limit or the user's remaining quota.
func (r *Repo) precheck(uploader string, length int64) error {
	if length > r.cfg.MaxUploadBytes {
		return tooLarge(r.cfg.MaxUploadBytes)
	}
	if r.cfg.QuotaBytes <= 0 || length < 0 {
		return nil
	}
	return r.db.View(func(tx *store.Tx) error {
		if used := int64(store.U64(tx.Get(store.MediaUsage, []byte(uploader)))); used+length > r.cfg.QuotaBytes {
			return quotaExceeded()
		}
		return nil
	})
}

// charge adds size to the user's usage, or refuses it over the quota.
func (r *Repo) charge(tx *store.Tx, uploader string, size int64) error {
	used := int64(store.U64(tx.Get(store.MediaUsage, []byte(uploader))))
	if r.cfg.QuotaBytes > 0 && used+size > r.cfg.QuotaBytes {
		return quotaExceeded()
	}
	return tx.Put(store.MediaUsage, []byte(uploader), store.PutU64(uint64(used+size)))
}

func tooLarge(limit int64) *matrixerr.Error {
	return matrixerr.TooLarge(fmt.Sprintf("uploads are limited to %d bytes", limit))
}

// quotaExceeded is the spec's answer for a full quota: POST /upload lists
// "the user has reached a quota for uploaded content" under 403 M_FORBIDDEN.
func quotaExceeded() *matrixerr.Error {
	return matrixerr.Forbidden("media quota exceeded")
}

// writeBlob streams body to a temp file while hashing it; the caller
// places it with commitBlob. A body over the limit is cut off as soon as
// it passes it and leaves nothing behind.
func (r *Repo) writeBlob(body io.Reader) (tmpPath, sum string, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Join(r.cfg.Dir, "tmp"), "upload-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("media: temp file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, r.cfg.MaxUploadBytes+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return "", "", 0, tooLarge(r.cfg.MaxUploadBytes)
	case matrixerr.IsDiskFull(err):
		return "", "", 0, fmt.Errorf("media: write upload: %w", err) // DiskFull once written
	case err != nil:
		return "", "", 0, &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN",
			Message: "could not read the upload"}
	case size > r.cfg.MaxUploadBytes:
		err = tooLarge(r.cfg.MaxUploadBytes)
		return "", "", 0, err
	}
	if err = tmp.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("media: sync: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return "", "", 0, fmt.Errorf("media: close: %w", err)
	}
	return tmp.Name(), hex.EncodeToString(h.Sum(nil)), size, nil
}

// commitBlob moves the temp file to its content address and runs the
// metadata update; if the update fails, a file this call placed is removed
// again, so a refused upload leaves nothing stored. commitMu keeps another
// upload of the same bytes from relying on a file that is about to go.
func (r *Repo) commitBlob(ctx context.Context, tmpPath, sum string, update func(*store.Tx) error) error {
	defer os.Remove(tmpPath) // no-op once renamed
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	dst := r.blobPath(sum)
	placed := false
	if _, err := os.Stat(dst); err != nil {
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("media: %w", err)
		}
		if err := os.Rename(tmpPath, dst); err != nil {
			return fmt.Errorf("media: store blob: %w", err)
		}
		placed = true
	}
	if err := r.db.Update(ctx, update); err != nil {
		if placed {
			os.Remove(dst)
		}
		return err
	}
	return nil
}
