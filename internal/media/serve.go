package media

import "mime"

// inlineTypes are the content types the spec's "Serving inline content"
// section lists as safe to show in a browser; everything else is served
// as an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true,
	"image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true,
	"audio/flac": true, "audio/x-flac": true,
}

// InlineSafe reports whether content of type ct may be served inline.
func InlineSafe(ct string) bool { return inlineTypes[baseType(ct)] }

// Disposition is the Content-Disposition for serving content of type ct
// under filename (Client-Server API §"GET /download": inline only for safe
// types, the upload's filename when it had one). The filename is quoted,
// or RFC 2231/6266-encoded (filename*=utf-8”…) when it is not plain ASCII.
func Disposition(ct, filename string) string {
	kind := "attachment"
	if InlineSafe(ct) {
		kind = "inline"
	}
	if filename == "" {
		return kind
	}
	if v := mime.FormatMediaType(kind, map[string]string{"filename": filename}); v != "" {
		return v
	}
	return kind // a name mime cannot encode is left out rather than mangled
}
