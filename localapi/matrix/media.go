package matrix

import (
	"net/http"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/media"
)

// SetMedia connects the content repository; without it the media
// endpoints answer M_UNRECOGNIZED.
func (s *Server) SetMedia(m *media.Repo) { s.media = m }

// Media is the content repository set by SetMedia (nil when off), for the
// daemon to share with the federation service.
func (s *Server) Media() *media.Repo { return s.media }

// mediaCSP is the Content-Security-Policy the spec recommends for served
// media (Client-Server API §"Content repository", security considerations):
// nothing served here may run script or load anything.
const mediaCSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';"

// mediaRoutes registers the content repository (Client-Server API
// §"Content repository", authenticated media of v1.11). Uploads stay under
// /_matrix/media as the spec has them.
func (s *Server) mediaRoutes() {
	m, a := s.mux, s.authed
	const v1 = "/_matrix/client/v1/media"
	const legacy = "/_matrix/media/v3"
	m.HandleFunc("GET "+v1+"/config", a(s.mediaConfig))
	m.HandleFunc("GET "+v1+"/download/{serverName}/{mediaId}", a(s.mediaDownload))
	m.HandleFunc("GET "+v1+"/download/{serverName}/{mediaId}/{fileName}", a(s.mediaDownload))
	m.HandleFunc("GET "+v1+"/thumbnail/{serverName}/{mediaId}", a(s.mediaThumbnail))
	m.HandleFunc("GET "+v1+"/preview_url", a(s.mediaPreview))
	m.HandleFunc("POST "+legacy+"/upload", a(s.mediaUpload))
	m.HandleFunc("PUT "+legacy+"/upload/{serverName}/{mediaId}", a(s.mediaUploadTo))
	m.HandleFunc("POST /_matrix/media/v1/create", a(s.mediaCreate))

	// The deprecated unauthenticated endpoints. config and preview_url
	// always required a token and still work; download and thumbnail are
	// frozen as the v1.11 deprecation describes: media that arrived after
	// the freeze is 404 M_NOT_FOUND there, and this server has served none
	// from before it, so every request gets that answer.
	m.HandleFunc("GET "+legacy+"/config", a(s.mediaConfig))
	m.HandleFunc("GET "+legacy+"/preview_url", a(s.mediaPreview))
	m.HandleFunc("GET "+legacy+"/download/{serverName}/{mediaId}", public(s.mediaFrozen))
	m.HandleFunc("GET "+legacy+"/download/{serverName}/{mediaId}/{fileName}", public(s.mediaFrozen))
	m.HandleFunc("GET "+legacy+"/thumbnail/{serverName}/{mediaId}", public(s.mediaFrozen))
}

// isMediaUpload reports whether r is an upload, which has its own size
// limit (max_upload_bytes) instead of the API's request body limit.
func (s *Server) isMediaUpload(r *http.Request) bool {
	if s.media == nil {
		return false
	}
	p := r.URL.Path
	return (r.Method == http.MethodPost && p == "/_matrix/media/v3/upload") ||
		(r.Method == http.MethodPut && strings.HasPrefix(p, "/_matrix/media/v3/upload/"))
}

// mediaReady checks that the repository is on; handlers return its error
// when it is not.
func (s *Server) mediaReady() error {
	if s.media == nil {
		return matrixerr.Unrecognized("the content repository is not enabled")
	}
	return nil
}

func (s *Server) mediaFrozen(w http.ResponseWriter, r *http.Request) error {
	return matrixerr.NotFound("unauthenticated media is frozen: use /_matrix/client/v1/media")
}

func (s *Server) mediaConfig(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"m.upload.size": s.media.MaxUploadBytes()})
	return nil
}

// upload reads what POST and PUT /upload share.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) media.Upload {
	return media.Upload{
		Body:          http.MaxBytesReader(w, r.Body, s.media.MaxUploadBytes()),
		ContentLength: r.ContentLength,
		ContentType:   r.Header.Get("Content-Type"),
		Filename:      r.URL.Query().Get("filename"),
	}
}

func (s *Server) mediaUpload(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	id, err := s.media.Store(r.Context(), c.UserID, s.upload(w, r))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"content_uri": s.media.MXC(id)})
	return nil
}

func (s *Server) mediaCreate(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	id, expires, err := s.media.Create(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"content_uri": s.media.MXC(id), "unused_expires_at": expires})
	return nil
}

func (s *Server) mediaUploadTo(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	if r.PathValue("serverName") != s.media.ServerName() {
		return matrixerr.NotFound("this media ID was not created here")
	}
	if err := s.media.StoreTo(r.Context(), c.UserID, r.PathValue("mediaId"), s.upload(w, r)); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// mediaRecord resolves {serverName}/{mediaId} to an uploaded record,
// waiting up to timeout_ms for a pending async upload. Media of other
// servers comes from the repository's cache, fetched over federation on
// first use (media.Repo.Remote; 404 M_NOT_FOUND while federation is off).
func (s *Server) mediaRecord(r *http.Request) (*media.Record, error) {
	if server := r.PathValue("serverName"); server != s.media.ServerName() {
		return s.media.Remote(r.Context(), server, r.PathValue("mediaId"))
	}
	wait, err := queryInt(r.URL.Query(), "timeout_ms", 20000)
	if err != nil {
		return nil, err
	}
	return s.media.Ready(r.Context(), r.PathValue("mediaId"), time.Duration(wait)*time.Millisecond)
}

// setMediaHeaders adds the headers every served file carries.
func setMediaHeaders(h http.Header, contentType, disposition string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disposition)
	h.Set("Content-Security-Policy", mediaCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
}

func (s *Server) mediaDownload(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	rec, err := s.mediaRecord(r)
	if err != nil {
		return err
	}
	f, err := s.media.Open(rec)
	if err != nil {
		return err
	}
	defer f.Close()
	name := rec.Filename
	if n := r.PathValue("fileName"); n != "" {
		name = n
	}
	setMediaHeaders(w.Header(), rec.ContentType, media.Disposition(rec.ContentType, name))
	// ServeContent streams the file and answers Range requests; with the
	// type set it does not sniff.
	http.ServeContent(w, r, "", time.UnixMilli(rec.Created), f)
	return nil
}

func (s *Server) mediaThumbnail(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	width, height, method, err := media.ThumbnailParams(r.URL.Query())
	if err != nil {
		return err
	}
	rec, err := s.mediaRecord(r)
	if err != nil {
		return err
	}
	th, err := s.media.Thumbnail(r.Context(), rec, width, height, method)
	if err != nil {
		return err
	}
	defer th.File.Close()
	ext := strings.TrimPrefix(th.ContentType, "image/")
	setMediaHeaders(w.Header(), th.ContentType, media.Disposition(th.ContentType, "thumbnail."+ext))
	http.ServeContent(w, r, "", time.UnixMilli(rec.Created), th.File)
	return nil
}

func (s *Server) mediaPreview(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.mediaReady(); err != nil {
		return err
	}
	u := r.URL.Query().Get("url")
	if u == "" {
		return matrixerr.MissingParam("url is required")
	}
	og, err := s.media.Preview(r.Context(), u)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, og)
	return nil
}
