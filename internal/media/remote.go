package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Media of other servers (Client-Server API §"Content repository": a
// download of mxc://<other server>/<id> is fetched by this server over
// federation, Server-Server API §"Content Repository"). The first request
// fetches the file and keeps it; later ones are served from the copy
// without any network access. A copy lives in the same content-addressed
// files as uploads, under the media key "<server>/<mediaID>" (never a
// local ID: those have no "/"), with Record.Origin set, so it is never
// served to other servers as ours and is charged to nobody's quota.
// Thumbnails of remote media are made here from the cached original.

// Fetcher gets media from the server that owns it; the federation service
// implements it. media never imports federation.
type Fetcher interface {
	// Download fetches the original file. The caller closes Body.
	Download(ctx context.Context, server, mediaID string) (*RemoteFile, error)
}

// RemoteFile is a file as another server sent it.
type RemoteFile struct {
	Body          io.ReadCloser
	ContentLength int64 // -1 when unknown
	ContentType   string
	Filename      string // from its Content-Disposition, if any
}

// SetFetcher lets the repository fetch other servers' media; without one
// such media is 404 M_NOT_FOUND.
func (r *Repo) SetFetcher(f Fetcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetcher = f
}

func (r *Repo) getFetcher() Fetcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetcher
}

// remoteKey is the media bucket key of a cached copy.
func remoteKey(server, mediaID string) []byte { return []byte(server + "/" + mediaID) }

// validMediaID is the spec's media ID grammar: [A-Za-z0-9_-]+.
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validServerName is a loose check of a server name (host[:port]): enough
// to keep the cache key unambiguous and the fetch on a plain host.
func validServerName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, "/?#@ \\\x00")
}

// RemoteRecord returns the cached copy of another server's media, if this
// server has one.
func (r *Repo) RemoteRecord(server, mediaID string) (*Record, error) {
	var rec *Record
	err := r.db.View(func(tx *store.Tx) error {
		v := tx.Get(store.Media, remoteKey(server, mediaID))
		if v == nil {
			return matrixerr.NotFound("media not found")
		}
		rec = new(Record)
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("media: remote record %s/%s: %w", server, mediaID, err)
		}
		if rec.Origin != server {
			return matrixerr.NotFound("media not found")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// Remote returns the record of mxc://server/mediaID for a local client:
// the cached copy, or else the file fetched through the Fetcher and cached.
// A file over MaxUploadBytes is cut off as soon as it passes the limit,
// keeps nothing, and is 502 M_TOO_LARGE (the spec's "content is too large
// for the server to serve").
func (r *Repo) Remote(ctx context.Context, server, mediaID string) (*Record, error) {
	if server == r.cfg.ServerName {
		return nil, matrixerr.InvalidParam("media of this server is not remote")
	}
	if !validServerName(server) || !validMediaID(mediaID) {
		return nil, matrixerr.NotFound("media not found")
	}
	if rec, err := r.RemoteRecord(server, mediaID); err == nil || !IsNotFound(err) {
		return rec, err
	}
	f := r.getFetcher()
	if f == nil {
		return nil, matrixerr.NotFound("media on other servers cannot be fetched: federation is off")
	}
	// One fetch per file at a time: several devices showing the same new
	// image wait for the first fetch and are then served its copy.
	done, err := r.startFetch(ctx, string(remoteKey(server, mediaID)))
	if err != nil {
		return nil, err
	}
	defer done()
	if rec, err := r.RemoteRecord(server, mediaID); err == nil || !IsNotFound(err) {
		return rec, err
	}
	rf, err := f.Download(ctx, server, mediaID)
	if err != nil {
		return nil, err
	}
	defer rf.Body.Close()
	if rf.ContentLength > r.cfg.MaxUploadBytes {
		return nil, remoteTooLarge(r.cfg.MaxUploadBytes)
	}
	tmp, sum, size, err := r.writeBlob(rf.Body)
	if err != nil {
		var me *matrixerr.Error
		if errors.As(err, &me) && me.Code == "M_TOO_LARGE" {
			return nil, remoteTooLarge(r.cfg.MaxUploadBytes)
		}
		if errors.As(err, &me) {
			return nil, matrixerr.Unknown(fmt.Sprintf("could not read the media from %s", server)).WithStatus(http.StatusBadGateway)
		}
		return nil, err
	}
	rec := &Record{SHA256: sum, ContentType: cleanContentType(rf.ContentType), Filename: rf.Filename,
		Size: size, Created: time.Now().UnixMilli(), Origin: server}
	// No quota charge: nobody here uploaded it.
	err = r.commitBlob(ctx, tmp, sum, func(tx *store.Tx) error { return putRemote(tx, server, mediaID, rec) })
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// startFetch waits until no other fetch of key is under way, then marks
// one as under way until the returned func is called.
func (r *Repo) startFetch(ctx context.Context, key string) (func(), error) {
	for {
		r.mu.Lock()
		if r.fetching == nil {
			r.fetching = map[string]chan struct{}{}
		}
		busy, ok := r.fetching[key]
		if !ok {
			ch := make(chan struct{})
			r.fetching[key] = ch
			r.mu.Unlock()
			return func() {
				r.mu.Lock()
				delete(r.fetching, key)
				r.mu.Unlock()
				close(ch)
			}, nil
		}
		r.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func putRemote(tx *store.Tx, server, mediaID string, rec *Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Put(store.Media, remoteKey(server, mediaID), v)
}

// remoteTooLarge is the spec's 502 M_TOO_LARGE for remote content over the
// limit this server serves.
func remoteTooLarge(limit int64) *matrixerr.Error {
	return matrixerr.TooLarge(fmt.Sprintf("the remote media is larger than the %d bytes this server serves", limit)).
		WithStatus(http.StatusBadGateway)
}
