//go:build !linux && !darwin

package daemon

import "fmt"

// Service is not built for this OS yet: Windows autostart (a Run-key entry)
// and its stop path arrive with the Windows packaging.
func Service(cfg Config, action ServiceAction, manage bool) (string, error) {
	return "", fmt.Errorf("hearth service is not supported on this OS yet")
}
