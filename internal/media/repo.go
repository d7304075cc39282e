// Package media is Hearth's content repository (Client-Server API
// §"Content repository"): it stores uploaded files on disk, content-addressed
// by SHA-256, keeps their metadata in the bbolt file, makes thumbnails of
// images and, when enabled, URL previews. It owns <data dir>/media and the
// media buckets; it must never hold a whole upload in memory, never decode
// an image whose size it has not checked, and never let a hostile file take
// the daemon down.
package media

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/netscope"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Config is the repository's settings.
type Config struct {
	// Dir is where files live: <data dir>/media.
	Dir string
	// ServerName is the authority of the mxc:// URIs this server issues.
	ServerName string
	// MaxUploadBytes bounds one upload (M_TOO_LARGE beyond it).
	MaxUploadBytes int64
	// QuotaBytes bounds the total a user may upload; 0 means no quota.
	QuotaBytes int64
	// MaxPixels bounds the images thumbnails are made from; 0 is DefaultMaxPixels.
	MaxPixels int64
	// DecodeBudgetBytes bounds the memory of the thumbnail decodes under
	// way together (estimated from each image's header); 0 is
	// DefaultDecodeBudget.
	DecodeBudgetBytes int64
	// Previews enables GET /preview_url.
	Previews bool
	// PreviewPolicy decides which addresses previews may connect to; nil
	// is netscope.Public. Only tests relax it (to reach an httptest server).
	PreviewPolicy AddrPolicy
}

// Record is the stored metadata of one media ID.
type Record struct {
	SHA256      string `json:"sha256,omitempty"` // hex; empty while an async upload is pending
	ContentType string `json:"content_type,omitempty"`
	Filename    string `json:"filename,omitempty"`
	Size        int64  `json:"size"`
	Uploader    string `json:"uploader"`
	Created     int64  `json:"created"`           // ms since the epoch
	ExpiresAt   int64  `json:"expires,omitempty"` // unused_expires_at of a pending ID
	// Origin is the server a cached copy of remote media came from; empty
	// for media uploaded here (see remote.go).
	Origin string `json:"origin,omitempty"`
}

// Pending reports whether the ID was created but nothing was uploaded yet.
func (r *Record) Pending() bool { return r.SHA256 == "" }

// Tuning that is not configurable.
const (
	// PendingLifetime is the spec's recommended unused_expires_at (24 h).
	PendingLifetime = 24 * time.Hour
	// MaxPendingPerUser bounds created, not yet uploaded IDs (POST /create
	// answers M_LIMIT_EXCEEDED beyond it, as the spec asks).
	MaxPendingPerUser = 32
	// MaxWait caps timeout_ms on downloads of pending media.
	MaxWait = 60 * time.Second
	// DefaultMaxPixels admits a 32 MP photo and refuses decompression
	// bombs (Synapse's max_image_pixels default).
	DefaultMaxPixels = 32_000_000
	// DefaultDecodeBudget holds one 32 MP decode at 8 bytes a pixel, or
	// two at 4.
	DefaultDecodeBudget = 256 << 20
)

// Errors with codes matrixerr has no constructor for.
func errNotYetUploaded() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusGatewayTimeout, Code: "M_NOT_YET_UPLOADED",
		Message: "the content has not been uploaded yet"}
}

func errCannotOverwrite() *matrixerr.Error {
	return &matrixerr.Error{Status: http.StatusConflict, Code: "M_CANNOT_OVERWRITE_MEDIA",
		Message: "media already uploaded"}
}

// Repo is the content repository.
type Repo struct {
	db  *store.DB
	cfg Config

	commitMu sync.Mutex // see commitBlob
	mu       sync.Mutex
	uploaded chan struct{} // closed (and replaced) when an async upload lands

	thumbSem chan struct{}                  // bounds concurrent image decodes (CPU)
	budget   *decodeBudget                  // bounds their memory (thumbnail.go)
	onDecode func(cost int64) (done func()) // test hook around each decode
	previews *previewer
	fetcher  Fetcher                  // guarded by mu; nil while federation is off
	fetching map[string]chan struct{} // guarded by mu; remote fetches under way (remote.go)
}

// New opens the repository, creating its folders.
func New(db *store.DB, cfg Config) (*Repo, error) {
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = DefaultMaxPixels
	}
	if cfg.DecodeBudgetBytes <= 0 {
		cfg.DecodeBudgetBytes = DefaultDecodeBudget
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 50 << 20
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "tmp"), filepath.Join(cfg.Dir, "thumbnails")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
	}
	r := &Repo{db: db, cfg: cfg, uploaded: make(chan struct{}), thumbSem: make(chan struct{}, 2),
		budget: newDecodeBudget(cfg.DecodeBudgetBytes)}
	policy := cfg.PreviewPolicy
	if policy == nil {
		policy = netscope.Public
	}
	r.previews = newPreviewer(policy)
	return r, nil
}

// ServerName is the authority of local mxc:// URIs.
func (r *Repo) ServerName() string { return r.cfg.ServerName }

// MaxUploadBytes is the upload limit, for GET /media/config.
func (r *Repo) MaxUploadBytes() int64 { return r.cfg.MaxUploadBytes }

// PreviewsEnabled reports whether URL previews are on.
func (r *Repo) PreviewsEnabled() bool { return r.cfg.Previews }

// MXC is the URI of a local media ID.
func (r *Repo) MXC(mediaID string) string { return "mxc://" + r.cfg.ServerName + "/" + mediaID }

// newMediaID returns 24 random characters of [A-Za-z0-9] (the spec's
// media ID grammar).
func newMediaID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 24)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// cleanContentType keeps a parseable type and otherwise falls back to
// application/octet-stream, the spec's default.
func cleanContentType(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return "application/octet-stream"
	}
	return ct
}

// Lookup returns the record of a local media ID, or M_NOT_FOUND.
func (r *Repo) Lookup(mediaID string) (*Record, error) {
	var rec *Record
	err := r.db.View(func(tx *store.Tx) error {
		var err error
		rec, err = getRecord(tx, mediaID)
		return err
	})
	return rec, err
}

func getRecord(tx *store.Tx, mediaID string) (*Record, error) {
	v := tx.Get(store.Media, []byte(mediaID))
	if v == nil {
		return nil, matrixerr.NotFound("media not found")
	}
	var rec Record
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("media: record %s: %w", mediaID, err)
	}
	if rec.Origin != "" {
		// A cached copy of another server's media is never local media,
		// whatever ID a request made up to reach its key.
		return nil, matrixerr.NotFound("media not found")
	}
	return &rec, nil
}

func putRecord(tx *store.Tx, mediaID string, rec *Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Put(store.Media, []byte(mediaID), v)
}

// Create reserves a media ID for a later upload (POST /_matrix/media/v1/create).
func (r *Repo) Create(ctx context.Context, uploader string) (mediaID string, expiresAt int64, err error) {
	now := time.Now()
	mediaID, expiresAt = newMediaID(), now.Add(PendingLifetime).UnixMilli()
	err = r.db.Update(ctx, func(tx *store.Tx) error {
		prefix := append([]byte(uploader), 0)
		n := 0
		var expired [][]byte
		c := tx.Cursor(store.MediaPending)
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			if int64(store.U64(v)) > now.UnixMilli() {
				n++
			} else {
				expired = append(expired, append([]byte(nil), k...))
			}
		}
		// IDs whose upload never came are forgotten here, when their
		// owner next creates one.
		for _, k := range expired {
			if err := tx.Delete(store.MediaPending, k); err != nil {
				return err
			}
			if err := tx.Delete(store.Media, k[len(prefix):]); err != nil {
				return err
			}
		}
		if n >= MaxPendingPerUser {
			return matrixerr.LimitExceeded(60_000)
		}
		rec := &Record{Uploader: uploader, Created: now.UnixMilli(), ExpiresAt: expiresAt}
		if err := putRecord(tx, mediaID, rec); err != nil {
			return err
		}
		return tx.Put(store.MediaPending, pendingKey(uploader, mediaID), store.PutU64(uint64(expiresAt)))
	})
	return mediaID, expiresAt, err
}

func pendingKey(uploader, mediaID string) []byte {
	return append(append([]byte(uploader), 0), mediaID...)
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// uploadedCh returns the channel closed when the next async upload lands.
// One channel for all IDs: async uploads are rare, and a waiter whose ID
// is still pending just waits again.
func (r *Repo) uploadedCh() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uploaded
}

func (r *Repo) wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.uploaded)
	r.uploaded = make(chan struct{})
}

// Ready returns the record of an uploaded local media ID. For an ID whose
// async upload has not arrived it waits up to wait (capped at MaxWait) and
// then answers 504 M_NOT_YET_UPLOADED, as GET /download's timeout_ms asks.
func (r *Repo) Ready(ctx context.Context, mediaID string, wait time.Duration) (*Record, error) {
	wait = min(max(wait, 0), MaxWait)
	var timer <-chan time.Time
	for {
		ch := r.uploadedCh() // before the read, so an upload in between wakes us
		rec, err := r.Lookup(mediaID)
		if err != nil {
			return nil, err
		}
		if !rec.Pending() {
			return rec, nil
		}
		if rec.ExpiresAt <= time.Now().UnixMilli() {
			return nil, matrixerr.NotFound("media not found")
		}
		if timer == nil {
			if wait == 0 {
				return nil, errNotYetUploaded()
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			return nil, errNotYetUploaded()
		case <-ctx.Done():
			return nil, errNotYetUploaded()
		}
	}
}

// Open opens the stored file of an uploaded record.
func (r *Repo) Open(rec *Record) (*os.File, error) {
	if rec.Pending() {
		return nil, errNotYetUploaded()
	}
	f, err := os.Open(r.blobPath(rec.SHA256))
	if err != nil {
		return nil, fmt.Errorf("media: open blob: %w", err)
	}
	return f, nil
}

// IsNotFound reports whether err is M_NOT_FOUND.
func IsNotFound(err error) bool {
	var me *matrixerr.Error
	return errors.As(err, &me) && me.Code == "M_NOT_FOUND"
}
