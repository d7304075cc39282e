package media

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"time"
)

//go:embed greeting.ogg
var defaultGreeting []byte

// MaxGreetingSize caps a replacement greeting file: 1 MiB is minutes of
// speech at voice bitrates, and the greeting is held in memory.
const MaxGreetingSize = 1 << 20

// MaxGreetingDuration caps a replacement greeting's length: a caller waits
// through all of it before the tone.
const MaxGreetingDuration = 60 * time.Second

// DefaultGreeting returns the greeting that ships with Hearth ("Hello. I
// can't take your call right now. Please leave a message after the tone."
// and a beep; README.md says how it is made). The slice is shared: do not
// modify it; wrap it in bytes.NewReader for PlayOgg.
func DefaultGreeting() []byte { return defaultGreeting }

// LoadGreeting reads a replacement greeting (the voicemail_greeting config
// key) and refuses anything PlayOgg could not play: over MaxGreetingSize,
// not Ogg/Opus (Inspect), or longer than MaxGreetingDuration. The daemon
// calls it at start so a bad file is a config error, not a silent call.
func LoadGreeting(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("voicemail greeting: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxGreetingSize+1))
	if err != nil {
		return nil, fmt.Errorf("voicemail greeting %s: %w", path, err)
	}
	if len(data) > MaxGreetingSize {
		return nil, fmt.Errorf("voicemail greeting %s: larger than %d bytes", path, MaxGreetingSize)
	}
	info, err := Inspect(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("voicemail greeting %s: %w", path, err)
	}
	if info.Duration > MaxGreetingDuration {
		return nil, fmt.Errorf("voicemail greeting %s: %v is longer than %v", path, info.Duration.Round(time.Second), MaxGreetingDuration)
	}
	return data, nil
}
