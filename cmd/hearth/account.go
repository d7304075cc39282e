package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hearth-chat/hearth/daemon"
)

// accountCmd manages accounts: through the control API when Hearth runs,
// directly on the data file when it does not.
func accountCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var name string
	if sub != "list" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "hearth account %s: NAME is required\n", sub)
			return 2
		}
		name, rest = rest[0], rest[1:]
	}
	var nearbyOn bool
	if sub == "nearby" {
		if len(rest) == 0 || (rest[0] != "on" && rest[0] != "off") {
			fmt.Fprintln(stderr, "hearth account nearby: say on or off after NAME")
			return 2
		}
		nearbyOn, rest = rest[0] == "on", rest[1:]
	}
	var password *string
	cfg, code := loadConfig("account "+sub, rest, stderr, func(fs *flag.FlagSet) {
		password = fs.String("password", "", "the password (default: a random one, printed)")
	})
	if code != 0 {
		return code
	}
	var err error
	var pw string
	var ids []string
	switch sub {
	case "add":
		if pw, err = daemon.AddAccount(cfg, name, *password); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) (err error) {
				_, pw, err = c.AddAccount(context.Background(), name, *password)
				return err
			})
		}
	case "passwd":
		if pw, err = daemon.SetPassword(cfg, name, *password); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) (err error) {
				pw, err = c.SetPassword(context.Background(), name, *password)
				return err
			})
		}
	case "list":
		if ids, err = daemon.ListAccounts(cfg); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) (err error) {
				ids, err = c.Accounts(context.Background())
				return err
			})
		}
		for _, id := range ids {
			fmt.Fprintln(stdout, id)
		}
	case "nearby":
		var userID string
		if userID, err = daemon.SetNearby(cfg, name, nearbyOn); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) error {
				res, err := c.SetNearby(context.Background(), name, nearbyOn)
				userID = res.UserID
				return err
			})
		}
		if err == nil {
			fmt.Fprintln(stdout, nearbyMessage(userID, nearbyOn))
			return 0
		}
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		return fail(stderr, err)
	}
	if sub != "list" {
		fmt.Fprintf(stdout, "@%s:%s\n", name, cfg.ServerName)
		if *password == "" {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
	}
	return 0
}

// nearbyMessage says what switching people nearby did.
func nearbyMessage(userID string, on bool) string {
	if on {
		return userID + " can be found by people on this network (with its display name)"
	}
	return userID + " is no longer announced to people on this network"
}
