package daemon

import "context"

// closers is the daemon's ordered stack of clean-ups. Each part Start
// starts pushes what stops it, once it has started; a Start that fails
// part-way and Stop both run the stack from the top, so whatever started
// stops, in the reverse of the order it started in, and the store (the
// first part) closes last, after every writer.
type closers struct {
	parts []closer
}

type closer struct {
	name  string // for the stop-order test
	close func(ctx context.Context) error
}

// push adds the clean-up of a part that has just started.
func (c *closers) push(name string, close func(ctx context.Context) error) {
	c.parts = append(c.parts, closer{name, close})
}

// pushFunc is push for a clean-up that needs no context and cannot fail.
func (c *closers) pushFunc(name string, close func()) {
	c.push(name, func(context.Context) error { close(); return nil })
}

// close runs every clean-up, from the last pushed to the first, and empties
// the stack. It returns the first error; the later clean-ups run anyway,
// since a part that failed to stop must not keep the store open.
func (c *closers) close(ctx context.Context) error {
	var first error
	for i := len(c.parts) - 1; i >= 0; i-- {
		if err := c.parts[i].close(ctx); err != nil && first == nil {
			first = err
		}
	}
	c.parts = nil
	return first
}

// names lists the parts from the first to stop to the last.
func (c *closers) names() []string {
	out := make([]string, 0, len(c.parts))
	for i := len(c.parts) - 1; i >= 0; i-- {
		out = append(out, c.parts[i].name)
	}
	return out
}
