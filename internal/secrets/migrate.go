package secrets

import (
	"errors"
	"fmt"
)

// Migrate moves the signing key, the federation certificate (absent where
// federation never ran in lan mode) and the secrets named in extra (absent
// ones are skipped) from one store to another ('hearth keys migrate').
// Every copy is read back before anything is removed from the source, so
// a failure leaves the secrets where they were. Moving a store onto itself
// does nothing.
func Migrate(from, to Store, extra ...string) error {
	if from.Where() == to.Where() {
		return nil
	}
	names := append([]string{SigningKeyName, TLSCertName}, extra...)
	for _, name := range names {
		s, err := from.Get(name)
		if errors.Is(err, ErrNotFound) && name != SigningKeyName {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s from %s: %w", name, from.Where(), err)
		}
		if err := to.Set(name, s); err != nil {
			return err
		}
		if back, err := to.Get(name); err != nil || back != s {
			return fmt.Errorf("%s did not read back from %s: %v", name, to.Where(), err)
		}
	}
	for _, name := range names {
		if err := from.Remove(name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}
