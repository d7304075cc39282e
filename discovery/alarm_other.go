//go:build !linux

package discovery

import "time"

// alarm is a Linux remedy (alarm_linux.go); elsewhere the read deadline
// alone wakes the run goroutine.
type alarm struct{}

func newAlarm() *alarm              { return nil }
func (a *alarm) set(time.Time) bool { return false }
func (a *alarm) close()             {}
func (a *alarm) watch(func())       {}
