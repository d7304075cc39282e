package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/media"
)

// Media over federation (Server-Server API §"Content Repository",
// authenticated media of v1.11): other servers download this server's
// uploads, and this server downloads theirs for its own clients (the
// media.Fetcher the content repository calls).

// mediaRoutes serves local media to other servers behind X-Matrix auth.
func (s *Service) mediaRoutes() {
	s.handle("GET /_matrix/federation/v1/media/download/{mediaID}", s.mediaDownload)
	s.handle("GET /_matrix/federation/v1/media/thumbnail/{mediaID}", s.mediaThumbnail)
}

// localMedia resolves the request's media ID to an uploaded local record,
// waiting up to timeout_ms for a pending async upload. Cached copies of
// other servers' media are not ours to serve: the repository's local
// lookup never returns them.
func (s *Service) localMedia(r *request) (*media.Record, error) {
	if s.cfg.Media == nil {
		return nil, matrixerr.NotFound("this server has no content repository")
	}
	wait := int64(20000)
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, matrixerr.InvalidParam("timeout_ms must be a non-negative integer")
		}
		wait = n
	}
	return s.cfg.Media.Ready(r.Context(), r.PathValue("mediaID"), time.Duration(wait)*time.Millisecond)
}

func (s *Service) mediaDownload(w http.ResponseWriter, r *request) error {
	rec, err := s.localMedia(r)
	if err != nil {
		return err
	}
	f, err := s.cfg.Media.Open(rec)
	if err != nil {
		return err
	}
	defer f.Close()
	writeMediaParts(w, rec.ContentType, media.Disposition(rec.ContentType, rec.Filename), f)
	return nil
}

func (s *Service) mediaThumbnail(w http.ResponseWriter, r *request) error {
	width, height, method, err := media.ThumbnailParams(r.URL.Query())
	if err != nil {
		return err
	}
	rec, err := s.localMedia(r)
	if err != nil {
		return err
	}
	th, err := s.cfg.Media.Thumbnail(r.Context(), rec, width, height, method)
	if err != nil {
		return err
	}
	defer th.File.Close()
	writeMediaParts(w, th.ContentType, media.Disposition(th.ContentType, ""), th.File)
	return nil
}

// writeMediaParts answers with the spec's multipart/mixed body: a JSON
// part with the (always empty) metadata, then the bytes with their type
// and disposition.
func writeMediaParts(w http.ResponseWriter, contentType, disposition string, body io.Reader) {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()}))
	w.WriteHeader(http.StatusOK)
	err := func() error {
		meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
		if err != nil {
			return err
		}
		if _, err := io.WriteString(meta, "{}"); err != nil {
			return err
		}
		part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {contentType}, "Content-Disposition": {disposition}})
		if err != nil {
			return err
		}
		if _, err := io.Copy(part, body); err != nil {
			return err
		}
		return mw.Close()
	}()
	if err != nil {
		slog.Debug("federation: write media", "err", err)
	}
}

// maxMediaErrorBytes bounds what is read of another server's error body.
const maxMediaErrorBytes = 64 << 10

// Download fetches mxc://server/mediaID from its server with GET
// /_matrix/federation/v1/media/download (media.Fetcher). The body it
// returns streams the media part straight from the connection; the
// content repository enforces the size limit while storing it. A second
// part that redirects (Location) is not followed: it is 502.
func (s *Service) Download(ctx context.Context, server, mediaID string) (*media.RemoteFile, error) {
	if spec.ServerName(server) == s.cfg.ServerName {
		return nil, matrixerr.NotFound("media of this server is not fetched over federation")
	}
	resp, err := s.cfg.Client.DownloadMedia(ctx, s.cfg.ServerName, spec.ServerName(server), mediaID)
	if err != nil {
		return nil, badGateway(server, "could not reach it: %v", err)
	}
	keep := false
	defer func() {
		if !keep {
			resp.Body.Close()
		}
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, mediaFetchError(server, resp)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, badGateway(server, "it did not answer with multipart/mixed")
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return nil, badGateway(server, "the metadata part is missing: %v", err)
	}
	var metadata map[string]any
	if err := json.NewDecoder(io.LimitReader(meta, maxMediaErrorBytes)).Decode(&metadata); err != nil {
		return nil, badGateway(server, "the metadata part is not a JSON object")
	}
	part, err := mr.NextPart()
	if err != nil {
		return nil, badGateway(server, "the media part is missing: %v", err)
	}
	if part.Header.Get("Location") != "" {
		return nil, badGateway(server, "it redirected the download, which this server does not follow")
	}
	rf := &media.RemoteFile{Body: partBody{part, resp.Body}, ContentLength: -1,
		ContentType: part.Header.Get("Content-Type")}
	if n, err := strconv.ParseInt(part.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		rf.ContentLength = n
	}
	if _, p, err := mime.ParseMediaType(part.Header.Get("Content-Disposition")); err == nil {
		rf.Filename = p["filename"] // mime decodes filename*=utf-8'' into it
	}
	keep = true
	return rf, nil
}

// partBody reads the media part and closes the whole response.
type partBody struct {
	io.Reader
	io.Closer
}

// mediaFetchError turns a non-200 answer to a media download into the
// error the local client gets: 404 stays 404 (also M_UNRECOGNIZED: a
// server without authenticated media has none for us), M_TOO_LARGE and
// M_NOT_YET_UPLOADED keep their code, anything else is 502.
func mediaFetchError(server string, resp *http.Response) error {
	var body struct {
		Code    string `json:"errcode"`
		Message string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, maxMediaErrorBytes)).Decode(&body)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return matrixerr.NotFound("media not found on " + server)
	case body.Code == "M_TOO_LARGE":
		return matrixerr.TooLarge(server + ": " + body.Message).WithStatus(http.StatusBadGateway)
	case body.Code == "M_NOT_YET_UPLOADED":
		return &matrixerr.Error{Status: http.StatusGatewayTimeout, Code: body.Code, Message: server + ": " + body.Message}
	}
	return badGateway(server, "it answered %d %s", resp.StatusCode, body.Code)
}

func badGateway(server, format string, args ...any) *matrixerr.Error {
	return matrixerr.Unknown(fmt.Sprintf("fetching media from %s: %s", server, fmt.Sprintf(format, args...))).
		WithStatus(http.StatusBadGateway)
}
