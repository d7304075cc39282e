package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// benchPush reports push evaluation cost per event in a room of 1,000
// members (issue 3). Unlike the other sections it does not drive a daemon:
// 1,000 accounts through /register would spend minutes in bcrypt and the
// figure would mix in /send and /sync. It runs the Go benchmark
// BenchmarkEvaluateRoom1000 in package push instead (go test, so it needs
// the Go toolchain, as `make bench` has): a real bbolt file and room engine,
// 999 local members joined through the engine, and for each event the
// evaluator's whole path — reading the event and room facts, running every
// member's rules with mautrix's evaluator, storing the notification log and
// count changes. Pusher delivery is not included (no pushers).
func benchPush(ctx context.Context, b *bench) []row {
	const events = 200
	metric := fmt.Sprintf("push evaluation per event, room of 1,000 local members (Go benchmark in package push, %d events)", events)
	const target = "measure"
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	cmd := exec.CommandContext(ctx, goTool, "test", "-run", "^$", "-bench", "^BenchmarkEvaluateRoom1000$",
		"-benchtime", fmt.Sprintf("%dx", events), "./push")
	b.logf("push: %s", cmd.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return []row{errRow(metric, target, fmt.Errorf("%v: %.300s", err, out))}
	}
	m := regexp.MustCompile(`BenchmarkEvaluateRoom1000\S*\s+\d+\s+(\d+(?:\.\d+)?) ns/op`).FindSubmatch(out)
	if m == nil {
		return []row{errRow(metric, target, fmt.Errorf("no result in: %.300s", out))}
	}
	ns, _ := strconv.ParseFloat(string(m[1]), 64)
	d := time.Duration(ns)
	v := fmt.Sprintf("%s (%.1f µs per member)", ms(d), ns/1000/999)
	return []row{{metric: metric, value: v, target: target, nums: figs(fig("", msF(d), "ms"))}}
}
