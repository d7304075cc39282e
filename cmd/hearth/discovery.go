package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// discoveryModeWords says what each lan_discovery mode means, for people.
var discoveryModeWords = map[string]string{
	"on":     "on: finds other Hearths on the local network and announces this one",
	"browse": "browse: finds other Hearths on the local network, never announces this one",
	"off":    "off: neither finds nor announces",
}

// peersModeCmd is `hearth peers mode [on|browse|off]`: show or switch LAN
// discovery (lan_discovery) on the running daemon, which stores it in the
// config file and applies it at once.
func peersModeCmd(args []string, stdout, stderr io.Writer) int {
	mode := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if discoveryModeWords[args[0]] == "" {
			fmt.Fprintln(stderr, "usage: hearth peers mode [on|browse|off]")
			return 2
		}
		mode, args = args[0], args[1:]
	}
	cfg, code := loadConfig("peers mode", args, stderr, nil)
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		ctx := context.Background()
		if mode != "" {
			st, err := c.SetDiscoveryMode(ctx, mode)
			if err != nil {
				return err
			}
			mode = st.Mode
		} else {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			mode = st.Discovery
		}
		fmt.Fprintln(stdout, "LAN discovery "+discoveryModeWords[mode])
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}
