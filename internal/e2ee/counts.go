package e2ee

import (
	"bytes"

	"github.com/hearth-chat/hearth/internal/store"
)

// DeviceCounts is one device's one-time key counts and unused fallback key
// algorithms, as /sync's device_one_time_keys_count and
// device_unused_fallback_key_types report them.
type DeviceCounts struct {
	OneTimeKeys    map[string]int
	UnusedFallback []string
}

// CountsOf returns the counts of every device with uploaded device keys
// whose user want accepts (user ID → device ID → counts), in one read: an
// application service's transactions carry them for its users' devices
// (MSC3202), which never sync. Only devices with device keys run
// encryption, so only they are listed.
func (s *Service) CountsOf(want func(userID string) bool) (map[string]map[string]DeviceCounts, error) {
	out := map[string]map[string]DeviceCounts{}
	err := s.db.View(func(tx *store.Tx) error {
		wanted := map[string]bool{}
		return tx.Bucket(store.DeviceKeys).ForEach(func(k, _ []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return nil
			}
			user, dev := string(k[:i]), string(k[i+1:])
			ok, seen := wanted[user]
			if !seen {
				ok = want(user)
				wanted[user] = ok
			}
			if !ok {
				return nil
			}
			if out[user] == nil {
				out[user] = map[string]DeviceCounts{}
			}
			out[user][dev] = DeviceCounts{OneTimeKeys: otkCounts(tx, user, dev), UnusedFallback: unusedFallbackTypes(tx, user, dev)}
			return nil
		})
	})
	return out, err
}
