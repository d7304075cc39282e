package matrix

import (
	"encoding/json"
	"net/http"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// backupRoutes registers Client-Server API §"Server-side key backups".
func (s *Server) backupRoutes(v3 string, a func(authedHandler) http.HandlerFunc) {
	m := s.mux
	m.HandleFunc("POST "+v3+"/room_keys/version", a(s.createBackup))
	m.HandleFunc("GET "+v3+"/room_keys/version", a(s.getBackup))
	m.HandleFunc("GET "+v3+"/room_keys/version/{version}", a(s.getBackup))
	m.HandleFunc("PUT "+v3+"/room_keys/version/{version}", a(s.updateBackup))
	m.HandleFunc("DELETE "+v3+"/room_keys/version/{version}", a(s.deleteBackup))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		m.HandleFunc("PUT "+v3+p, a(s.putBackupKeys))
		m.HandleFunc("GET "+v3+p, a(s.getBackupKeys))
		m.HandleFunc("DELETE "+v3+p, a(s.deleteBackupKeys))
	}
}

type backupVersionBody struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

func (s *Server) createBackup(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req backupVersionBody
	if err := readJSON(r, &req); err != nil {
		return err
	}
	v, err := s.keys.CreateBackup(r.Context(), c.UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]string{"version": v})
	return nil
}

func (s *Server) getBackup(w http.ResponseWriter, r *http.Request, c *caller) error {
	info, err := s.keys.Backup(c.UserID, r.PathValue("version"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) updateBackup(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req backupVersionBody
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Algorithm == "" {
		return matrixerr.MissingParam("algorithm is required")
	}
	if err := s.keys.UpdateBackup(r.Context(), c.UserID, r.PathValue("version"), req.Version, req.Algorithm, req.AuthData); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) deleteBackup(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.keys.DeleteBackup(r.Context(), c.UserID, r.PathValue("version")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// backupVersionParam returns the required ?version= of /room_keys/keys.
func backupVersionParam(r *http.Request) (string, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return "", matrixerr.MissingParam("version is required")
	}
	return v, nil
}

// putBackupKeys accepts the body of whichever level the path names and
// folds it into rooms → sessions → key data.
func (s *Server) putBackupKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	rooms := e2ee.BackupRooms{}
	switch {
	case sessionID != "":
		var d e2ee.SessionData
		if err := readJSON(r, &d); err != nil {
			return err
		}
		rooms[roomID] = map[string]*e2ee.SessionData{sessionID: &d}
	case roomID != "":
		var req struct {
			Sessions map[string]*e2ee.SessionData `json:"sessions"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.Sessions == nil {
			return matrixerr.MissingParam("sessions is required")
		}
		rooms[roomID] = req.Sessions
	default:
		var req struct {
			Rooms map[string]struct {
				Sessions map[string]*e2ee.SessionData `json:"sessions"`
			} `json:"rooms"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.Rooms == nil {
			return matrixerr.MissingParam("rooms is required")
		}
		for id, room := range req.Rooms {
			rooms[id] = room.Sessions
		}
	}
	count, etag, err := s.keys.PutBackupKeys(r.Context(), c.UserID, version, rooms)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "etag": etag})
	return nil
}

func (s *Server) getBackupKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	rooms, err := s.keys.BackupKeys(c.UserID, version, roomID, sessionID)
	if err != nil {
		return err
	}
	switch {
	case sessionID != "":
		d := rooms[roomID][sessionID]
		if d == nil {
			return matrixerr.NotFound("no key for this session")
		}
		matrixerr.WriteJSON(w, http.StatusOK, d)
	case roomID != "":
		sessions := rooms[roomID]
		if sessions == nil {
			sessions = map[string]*e2ee.SessionData{}
		}
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"sessions": sessions})
	default:
		out := map[string]any{}
		for id, sessions := range rooms {
			out[id] = map[string]any{"sessions": sessions}
		}
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"rooms": out})
	}
	return nil
}

func (s *Server) deleteBackupKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	count, etag, err := s.keys.DeleteBackupKeys(r.Context(), c.UserID, version, r.PathValue("roomId"), r.PathValue("sessionId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "etag": etag})
	return nil
}
