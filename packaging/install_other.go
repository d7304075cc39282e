//go:build !linux && !darwin && !windows

package packaging

import "fmt"

// Do has no implementation on this OS.
func (in Installer) Do(action Action, manage bool) (string, error) {
	return "", fmt.Errorf("hearth service is not supported on this OS")
}
