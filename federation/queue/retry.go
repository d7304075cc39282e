package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/matrix-org/gomatrix"
)

// backoff is the delay after the given number of consecutive failures:
// minBackoff doubling up to maxBackoff, with ±25% jitter so destinations
// that failed together (the network dropped) do not retry in lockstep.
func (q *Queue) backoff(failures int) time.Duration {
	d := q.minBackoff
	for i := 1; i < failures && d < q.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.maxBackoff)
	if d >= 4 {
		d = d - d/4 + rand.N(d/2)
	}
	return min(d, q.maxBackoff)
}

// permanent reports whether a failed send will fail the same way however
// often it is retried: a 4xx about the request itself (400 M_BAD_JSON,
// 413 M_TOO_LARGE, …). Auth failures (401, 403: the remote may not have
// our keys yet), 404 (a proxy not yet routing federation), 408 and 429
// are retried.
func permanent(err error) bool {
	var h gomatrix.HTTPError
	if !errors.As(err, &h) {
		return false
	}
	switch h.Code {
	case 401, 403, 404, 408, 429:
		return false
	}
	return h.Code >= 400 && h.Code < 500
}

// describe is err for humans (gomatrix.HTTPError prints its body as bytes).
func describe(err error) string {
	var h gomatrix.HTTPError
	if errors.As(err, &h) {
		if h.WrappedError != nil {
			return fmt.Sprintf("HTTP %d: %v", h.Code, h.WrappedError)
		}
		return fmt.Sprintf("HTTP %d: %s", h.Code, h.Message)
	}
	return err.Error()
}
