//go:build !linux && !darwin && !windows

package daemon

import "fmt"

// Service has no implementation on this OS.
func Service(cfg Config, action ServiceAction, manage bool) (string, error) {
	return "", fmt.Errorf("hearth service is not supported on this OS")
}
