// Package stream owns the global stream position and the wake-ups that long
// polls and queues wait on. Nothing here polls: a waiter blocks on a channel
// that is closed when the position moves.
package stream

import (
	"context"
	"sync"
)

// Notifier tracks two counters: Pos, the durable stream position (events,
// account data, receipts: everything in the bbolt file), and Ephemeral, an
// in-memory counter for typing notifications that are never stored.
type Notifier struct {
	mu        sync.Mutex
	pos       uint64
	ephemeral uint64
	moved     bool // pos moved since the last broadcast (Move, Wake)
	wake      chan struct{}
	// ephWake is closed when the ephemeral counter moves, and only then:
	// a long poll that waits for the push evaluator's results of a commit
	// instead of the commit itself still hears typing at once.
	ephWake chan struct{}
}

// New returns a notifier starting at the stored position pos.
func New(pos uint64) *Notifier {
	return &Notifier{pos: pos, wake: make(chan struct{}), ephWake: make(chan struct{})}
}

// Pos returns the current durable position and ephemeral counter.
func (n *Notifier) Pos() (pos, ephemeral uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos, n.ephemeral
}

// Move records that everything up to pos is durable (positions only move
// forward) without waking the waiters blocked in Wait: Pos reports it at
// once, and a Wait that begins now returns, but those already waiting
// sleep on until Wake. The store calls it, then hands on what long polls
// wait for, then Wake: a commit's followers are then readied after the
// long polls, not before them.
func (n *Notifier) Move(pos uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos > n.pos {
		n.pos = pos
		n.moved = true
	}
}

// Wake wakes the waiters of Wait if Move moved the position since they
// were last woken.
func (n *Notifier) Wake() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.moved {
		n.broadcast()
	}
}

// Bump moves the ephemeral counter and wakes waiters; it returns the new value.
func (n *Notifier) Bump() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ephemeral++
	n.broadcast()
	close(n.ephWake)
	n.ephWake = make(chan struct{})
	return n.ephemeral
}

// EphemeralWatch returns the ephemeral counter and a channel closed when
// it next moves (a durable commit does not close it).
func (n *Notifier) EphemeralWatch() (uint64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ephemeral, n.ephWake
}

func (n *Notifier) broadcast() {
	n.moved = false
	close(n.wake)
	n.wake = make(chan struct{})
}

// Wait blocks until either counter differs from (pos, ephemeral) or ctx ends.
func (n *Notifier) Wait(ctx context.Context, pos, ephemeral uint64) error {
	for {
		n.mu.Lock()
		if n.pos != pos || n.ephemeral != ephemeral {
			n.mu.Unlock()
			return nil
		}
		ch := n.wake
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
