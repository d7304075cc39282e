// Package matrixerr is the one way Hearth expresses a Matrix error: a value
// with the spec's errcode, an HTTP status and a message (Client-Server API
// §"Standard error response"). Packages below the HTTP layer return these so
// that the handler can answer with the right code without guessing.
package matrixerr

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
)

// Error is a Matrix error response.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"errcode"`
	Message string `json:"error"`
	// RetryAfterMs accompanies M_LIMIT_EXCEEDED.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
	// Extra fields some errors carry (e.g. soft_logout, UIA flows).
	Extra map[string]any `json:"-"`
	// Cause, when set, is a sentinel the error stands for (room.ErrUnknownRoom),
	// so callers decide with errors.Is instead of reading the message.
	Cause error `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap gives errors.Is and errors.As the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Because sets the error's cause and returns it.
func (e *Error) Because(cause error) *Error {
	e.Cause = cause
	return e
}

func newErr(status int, code string) func(msg string) *Error {
	return func(msg string) *Error { return &Error{Status: status, Code: code, Message: msg} }
}

// Constructors for the errors Hearth sends, named after their errcode.
var (
	NotJSON                = newErr(http.StatusBadRequest, "M_NOT_JSON")
	BadJSON                = newErr(http.StatusBadRequest, "M_BAD_JSON")
	InvalidParam           = newErr(http.StatusBadRequest, "M_INVALID_PARAM")
	MissingParam           = newErr(http.StatusBadRequest, "M_MISSING_PARAM")
	UnknownToken           = newErr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	MissingToken           = newErr(http.StatusUnauthorized, "M_MISSING_TOKEN")
	Forbidden              = newErr(http.StatusForbidden, "M_FORBIDDEN")
	NotFound               = newErr(http.StatusNotFound, "M_NOT_FOUND")
	TooLarge               = newErr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	Unrecognized           = newErr(http.StatusNotFound, "M_UNRECOGNIZED")
	UserInUse              = newErr(http.StatusBadRequest, "M_USER_IN_USE")
	InvalidUsername        = newErr(http.StatusBadRequest, "M_INVALID_USERNAME")
	UnsupportedRoomVersion = newErr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION")
	GuestAccessForbidden   = newErr(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN")
	RoomInUse              = newErr(http.StatusBadRequest, "M_ROOM_IN_USE")
	Unknown                = newErr(http.StatusInternalServerError, "M_UNKNOWN")
	UserDeactivated        = newErr(http.StatusForbidden, "M_USER_DEACTIVATED")
	WeakPassword           = newErr(http.StatusBadRequest, "M_WEAK_PASSWORD")
	InvalidRoomState       = newErr(http.StatusBadRequest, "M_INVALID_ROOM_STATE")
	BadAlias               = newErr(http.StatusBadRequest, "M_BAD_ALIAS")
	Unauthorized           = newErr(http.StatusUnauthorized, "M_UNAUTHORIZED")
	// Exclusive: a user ID or alias an application service claims
	// exclusively (Application Service API).
	Exclusive = newErr(http.StatusBadRequest, "M_EXCLUSIVE")
	// UnableToAuthoriseJoin and UnableToGrantJoin are a resident server's
	// answers to a restricted join it cannot decide or cannot vouch for
	// (Server-Server API §"Restricted rooms"): the joining server tries
	// another resident server.
	UnableToAuthoriseJoin = newErr(http.StatusBadRequest, "M_UNABLE_TO_AUTHORISE_JOIN")
	UnableToGrantJoin     = newErr(http.StatusBadRequest, "M_UNABLE_TO_GRANT_JOIN")
	// Conflict is the spec's 409 for a room alias that already exists.
	Conflict = newErr(http.StatusConflict, "M_UNKNOWN")
	// InviteBlocked refuses an invite the invitee's invite permission
	// config blocks (spec v1.18 §"Invite permission", MSC4155).
	InviteBlocked = newErr(http.StatusForbidden, "M_INVITE_BLOCKED")
)

// LimitExceeded is M_LIMIT_EXCEEDED with the wait the client should honour.
func LimitExceeded(retryAfterMs int64) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
		Message: "too many requests", RetryAfterMs: retryAfterMs}
}

// Write sends err as a Matrix error body. Errors that are not *Error are
// logged and sent as a 500 M_UNKNOWN without their text, which may hold
// internal detail; but a write the disk had no room for, from the store's
// commit or a media file, is DiskFull wherever it came from.
func Write(w http.ResponseWriter, err error) {
	var me *Error
	switch {
	case errors.As(err, &me):
	case IsDiskFull(err):
		slog.Error("the disk holding the data is full", "err", err)
		me = DiskFull()
	default:
		slog.Error("internal error", "err", err)
		me = Unknown("internal server error")
	}
	body := map[string]any{}
	if me.Code != "" {
		// A UIA challenge (401 with flows) is the one response with no errcode.
		body["errcode"], body["error"] = me.Code, me.Message
	}
	if me.RetryAfterMs > 0 {
		body["retry_after_ms"] = me.RetryAfterMs
		w.Header().Set("Retry-After", strconv.FormatInt((me.RetryAfterMs+999)/1000, 10))
	}
	for k, v := range me.Extra {
		body[k] = v
	}
	WriteJSON(w, me.Status, body)
}

// WithStatus returns e with a different HTTP status, for the few errcodes
// the spec pairs with more than one status.
func (e *Error) WithStatus(status int) *Error {
	e.Status = status
	return e
}
