package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func deviceIDs(t *testing.T, c *mautrix.Client) []id.DeviceID {
	t.Helper()
	resp, err := c.GetDevicesInfo(ctx(t))
	noErr(t, err, "list devices")
	var out []id.DeviceID
	for _, d := range resp.Devices {
		out = append(out, d.DeviceID)
	}
	slices.Sort(out)
	return out
}

// TestDevices lists, renames and deletes devices; deletion needs
// User-Interactive Auth with the password, and the deleted device's token
// stops working.
func TestDevices(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	phone := d.Register("alice")
	laptop := d.LoginDevice("alice", "laptop")

	want := []id.DeviceID{phone.DeviceID, laptop.DeviceID}
	slices.Sort(want)
	if got := deviceIDs(t, phone); !slices.Equal(got, want) {
		t.Fatalf("devices: %v, want %v", got, want)
	}
	info, err := phone.GetDeviceInfo(ctx(t), laptop.DeviceID)
	noErr(t, err, "get device")
	if info.DisplayName != "laptop" {
		t.Errorf("initial device display name %q, want laptop", info.DisplayName)
	}

	noErr(t, phone.SetDeviceInfo(ctx(t), laptop.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "old laptop"}), "rename device")
	info, err = laptop.GetDeviceInfo(ctx(t), laptop.DeviceID)
	noErr(t, err, "get renamed device")
	if info.DisplayName != "old laptop" {
		t.Errorf("renamed device display name %q, want %q", info.DisplayName, "old laptop")
	}
	_, err = phone.GetDeviceInfo(ctx(t), "NOSUCHDEVICE")
	wantMatrixErr(t, err, 404, "M_NOT_FOUND", "get an unknown device")

	path := "/_matrix/client/v3/devices/" + url.PathEscape(laptop.DeviceID.String())

	// Without auth: a 401 UIA challenge offering the password stage.
	status, b := Raw(t, phone, http.MethodDelete, path, map[string]any{})
	var uia mautrix.RespUserInteractive
	json.Unmarshal(b, &uia)
	if status != 401 || uia.Session == "" || !uia.HasSingleStageFlow(mautrix.AuthTypePassword) {
		t.Fatalf("delete without auth: %d %s; want a 401 UIA challenge with m.login.password", status, b)
	}

	auth := func(password string) map[string]any {
		return map[string]any{"auth": map[string]any{
			"type": "m.login.password", "session": uia.Session, "password": password,
			"identifier": map[string]any{"type": "m.id.user", "user": phone.UserID.String()},
		}}
	}
	// A wrong password: 401 M_FORBIDDEN, the device stays.
	status, b = Raw(t, phone, http.MethodDelete, path, auth("not the password"))
	var failed mautrix.RespUserInteractive
	json.Unmarshal(b, &failed)
	if status != 401 || failed.ErrCode != "M_FORBIDDEN" {
		t.Errorf("delete with a wrong password: %d %s; want 401 M_FORBIDDEN", status, b)
	}
	if !slices.Contains(deviceIDs(t, phone), laptop.DeviceID) {
		t.Fatal("a failed UIA deleted the device")
	}

	// The right password: deleted.
	status, b = Raw(t, phone, http.MethodDelete, path, auth(Password("alice")))
	if status != 200 {
		t.Fatalf("delete with the password: %d %s", status, b)
	}
	if got := deviceIDs(t, phone); !slices.Equal(got, []id.DeviceID{phone.DeviceID}) {
		t.Errorf("devices after delete: %v, want [%s]", got, phone.DeviceID)
	}
	_, err = laptop.Whoami(ctx(t))
	wantMatrixErr(t, err, 401, "M_UNKNOWN_TOKEN", "deleted device's token")
	_, err = laptop.SyncRequest(ctx(t), 0, "", "", false, "")
	wantMatrixErr(t, err, 401, "M_UNKNOWN_TOKEN", "deleted device's token on /sync")
	if _, err := phone.Whoami(ctx(t)); err != nil {
		t.Errorf("the remaining device's token: %v", err)
	}

	// Deleting through POST /delete_devices works the same way.
	tablet := d.LoginDevice("alice", "tablet")
	err = phone.DeleteDevices(ctx(t), &mautrix.ReqDeleteDevices{Devices: []id.DeviceID{tablet.DeviceID}})
	if err == nil {
		t.Fatal("delete_devices without auth succeeded")
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response.StatusCode != 401 {
		t.Fatalf("delete_devices without auth: %v, want 401", err)
	}
	json.Unmarshal([]byte(he.ResponseBody), &uia)
	noErr(t, phone.DeleteDevices(ctx(t), &mautrix.ReqDeleteDevices{Devices: []id.DeviceID{tablet.DeviceID},
		Auth: auth(Password("alice"))["auth"]}), "delete_devices with the password")
	_, err = tablet.Whoami(ctx(t))
	wantMatrixErr(t, err, 401, "M_UNKNOWN_TOKEN", "token of a device deleted by delete_devices")

	// Deletion is durable.
	d.Restart()
	_, err = laptop.Whoami(ctx(t))
	wantMatrixErr(t, err, 401, "M_UNKNOWN_TOKEN", "deleted device's token after restart")
	if got := deviceIDs(t, phone); !slices.Equal(got, []id.DeviceID{phone.DeviceID}) {
		t.Errorf("devices after restart: %v", got)
	}
}
