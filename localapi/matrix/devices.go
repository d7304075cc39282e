package matrix

import (
	"context"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, c *caller) error {
	devs, err := s.accounts.Devices(c.Localpart)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"devices": devs})
	return nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, c *caller) error {
	d, err := s.accounts.Device(c.Localpart, r.PathValue("deviceId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if c.Appservice != nil && c.Appservice.ManagesDevices() {
		// MSC4190: an appservice creates its users' devices with PUT.
		name := ""
		if req.DisplayName != nil {
			name = *req.DisplayName
		}
		if err := s.accounts.EnsureDevice(r.Context(), c.Localpart, r.PathValue("deviceId"), name); err != nil {
			return err
		}
	}
	if req.DisplayName != nil {
		if err := s.accounts.RenameDevice(r.Context(), c.Localpart, r.PathValue("deviceId"), *req.DisplayName); err != nil {
			return err
		}
	} else if _, err := s.accounts.Device(c.Localpart, r.PathValue("deviceId")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// deleteDevice and deleteDevices need UIA with the user's password, as the
// spec demands for device deletion.
func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, c *caller) error {
	return s.deleteDevicesUIA(w, r, c, []string{r.PathValue("deviceId")})
}

func (s *Server) deleteDevices(w http.ResponseWriter, r *http.Request, c *caller) error {
	return s.deleteDevicesUIA(w, r, c, nil)
}

func (s *Server) deleteDevicesUIA(w http.ResponseWriter, r *http.Request, c *caller, ids []string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if ids == nil {
		var req struct {
			Devices []string `json:"devices"`
		}
		if err := decode(body, &req); err != nil {
			return err
		}
		if req.Devices == nil {
			return matrixerr.MissingParam("devices is required")
		}
		ids = req.Devices
	} else if _, err := s.accounts.Device(c.Localpart, ids[0]); err != nil {
		return err
	}
	// MSC4190: an appservice deletes its users' devices without UIA (its
	// users have no password to give).
	if c.Appservice == nil || !c.Appservice.ManagesDevices() {
		if err := s.passwordUIA(r, body, c); err != nil {
			return err
		}
	}
	if err := s.accounts.DeleteDevices(r.Context(), c.Localpart, ids); err != nil {
		return err
	}
	if err := s.dropDevices(r.Context(), c, ids); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// changePassword implements POST /account/password, behind UIA.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		NewPassword   string `json:"new_password"`
		LogoutDevices *bool  `json:"logout_devices"`
	}
	if err := s.readWithUIA(r, c, &req); err != nil {
		return err
	}
	if req.NewPassword == "" {
		return matrixerr.MissingParam("new_password is required")
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	var dropped []string
	err := s.guard.hashing(r.Context(), func() (err error) {
		dropped, err = s.accounts.SetPassword(r.Context(), c.Localpart, req.NewPassword, logout, c.DeviceID)
		return err
	})
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		if err := s.dropDevices(r.Context(), c, dropped); err != nil {
			return err
		}
	}
	if logout && s.push != nil {
		// The revoked devices' pushers go with them.
		if err := s.push.RemovePushersExcept(r.Context(), c.UserID, c.DeviceID); err != nil {
			return err
		}
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// dropDevices forgets what belonged to deleted devices (ids; nil for all
// of the user's), called after the account service deleted them: their
// E2EE state, and the pushers their access tokens set, so that a device
// that logged out is pushed nothing more (Synapse removes them alike).
func (s *Server) dropDevices(ctx context.Context, c *caller, ids []string) error {
	if s.keys != nil {
		if err := s.keys.DeleteDevices(ctx, c.UserID, ids); err != nil {
			return err
		}
	}
	if s.push == nil {
		return nil
	}
	if ids == nil {
		return s.push.RemovePushers(ctx, c.UserID)
	}
	return s.push.RemovePushersOf(ctx, c.UserID, ids)
}
