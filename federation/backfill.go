package federation

import (
	"context"
	"log/slog"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Backfill fetches up to limit events of history older than what this
// server has of the room from another server in it (GET /backfill), for
// a client paging back past its local start. It returns how many events
// it placed in the timeline.
func (s *Service) Backfill(ctx context.Context, roomID string, limit int) (int, error) {
	from, more := s.cfg.Rooms.BackfillPoint(roomID)
	if !more {
		return 0, nil
	}
	servers, err := s.cfg.Rooms.JoinedServers(roomID)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	for _, server := range servers {
		if server == string(s.cfg.ServerName) {
			continue
		}
		// The starting event comes back too; ask for one more.
		txn, err := s.cfg.Client.Backfill(ctx, s.cfg.ServerName, spec.ServerName(server), roomID, limit+1, []string{from})
		if err != nil {
			slog.Info("federation: backfill failed", "room", roomID, "server", server, "err", err)
			continue
		}
		raws := make([]spec.RawJSON, 0, len(txn.PDUs))
		for _, p := range txn.PDUs {
			raws = append(raws, spec.RawJSON(p))
		}
		n, err := s.cfg.Rooms.StoreBackfill(ctx, roomID, s.checkedEvents(ctx, roomID, raws))
		if err != nil || n > 0 {
			return n, err
		}
	}
	return 0, nil
}
