package matrix

import (
	"context"
	"encoding/json"
)

// slidingExtensions is the parsed extensions object of a request.
type slidingExtensions struct{}

func parseSlidingExtensions(raw map[string]json.RawMessage) (*slidingExtensions, error) {
	return &slidingExtensions{}, nil
}

func (s *Server) slidingExtensions(ctx context.Context, c *caller, x *slidingExtensions, p *parsedSliding,
	base, next *slidingState, resp *slidingResponse) (bool, error) {
	return false, nil
}
