package media

import (
	"context"
	"sync"
)

// decodeBudget is a weighted semaphore in bytes: the memory that the
// images being decoded for thumbnails may take together. A decode waits
// (bounded by its request's context) until its estimate fits, so many
// concurrent thumbnails of large images cannot take the daemon to
// gigabytes. Waiters are served in arrival order, so a large image is not
// starved by a stream of small ones.
type decodeBudget struct {
	mu      sync.Mutex
	size    int64
	held    int64
	waiters []*budgetWaiter // oldest first

	// onWait, if set, is called (without the lock) when a decode has to
	// wait; tests use it to know a request is parked.
	onWait func(n int64)
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

func newDecodeBudget(size int64) *decodeBudget { return &decodeBudget{size: size} }

// acquire reserves n bytes (n ≤ size, which the caller checks first).
func (b *decodeBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.held+n <= b.size {
		b.held += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	if b.onWait != nil {
		b.onWait(n)
	}
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted while we gave up: hand it back
			b.held -= n
		default:
			for i, o := range b.waiters {
				if o == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
		}
		b.grantLocked()
		return ctx.Err()
	}
}

// release returns n bytes and wakes the waiters that now fit.
func (b *decodeBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held -= n
	b.grantLocked()
}

// grantLocked grants waiters in order while the first one fits.
func (b *decodeBudget) grantLocked() {
	for len(b.waiters) > 0 && b.held+b.waiters[0].n <= b.size {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.held += w.n
		close(w.ready)
	}
}
