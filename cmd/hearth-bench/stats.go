package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// row is one line of the result table. value is the free-text detail of
// one run; nums are its primary figures as numbers, which the report
// aggregates over runs (median and min–max of each, report.go). A row
// without nums (skipped, text only) is shown as it is. failed marks an
// error in place of a measurement.
//
// A new row: row{metric: m, target: t, value: v, nums: figs(fig("p50", x, "ms"), ...)}.
type row struct {
	metric, value, target string
	failed                bool
	nums                  []num
}

// num is one primary figure of a row: 1.23 "ms" labelled "p50", 3384
// "events/s" with no label. Figures of one row are aggregated index by
// index, so every run of a section must list them in the same order.
type num struct {
	Label string  `json:"label,omitempty"`
	V     float64 `json:"v"`
	Unit  string  `json:"unit"`
}

func fig(label string, v float64, unit string) num { return num{Label: label, V: v, Unit: unit} }
func figs(ns ...num) []num                         { return ns }

// msF is d in milliseconds, for a figure.
func msF(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// mibF is a /proc size in KiB as MiB, for a figure.
func mibF(kb int64) float64 { return float64(kb) / 1024 }

func errRow(metric, target string, err error) row {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return row{metric: metric, value: "ERROR: " + msg, target: target, failed: true}
}

func width(s string) int           { return len([]rune(s)) }
func ms(d time.Duration) string    { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func msNum(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// count writes 100000 as "100k" and other numbers as they are.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// pct returns the p-th percentile (0–100) of ds by nearest rank; ds is
// sorted in place.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// parallel runs fn(0..n-1) with at most width calls in flight and returns
// the first error; after an error it starts no more calls.
func parallel(n, width int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	var failed atomic.Bool
	sem := make(chan struct{}, width)
	for i := 0; i < n && !failed.Load(); i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				once.Do(func() { first = err })
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return first
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
