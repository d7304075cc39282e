package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// fill sends total messages spread round-robin over rooms, with -workers
// requests in flight; user k%len(users) sends message k, into
// rooms[k%len(rooms)]. Every user must be joined to every room it is
// given. It returns the elapsed time.
func (b *bench) fill(ctx context.Context, users []*user, rooms []string, total int, pick func(k int) (*user, string)) (time.Duration, error) {
	var next atomic.Int64
	start := time.Now()
	err := parallel(b.cfg.workers, b.cfg.workers, func(int) error {
		for {
			k := int(next.Add(1)) - 1
			if k >= total {
				return nil
			}
			u, room := pick(k)
			if _, err := b.send(ctx, u, room, fmt.Sprintf("fill %d: the quick brown fox jumps over the lazy dog", k)); err != nil {
				return err
			}
		}
	})
	return time.Since(start), err
}

// benchVolume measures memory after a lot of traffic: -volume-msgs
// messages spread evenly over -volume-rooms rooms, sent by -workers
// concurrent users (user w owns rooms w, w+workers, …). It then reads
// VmRSS (resident now) and VmHWM (peak resident) and the bbolt file size.
// RSS is split into anon (Go heap, stacks) and file (mostly bbolt's mmap
// of hearth.db, pages the kernel can drop under memory pressure); the
// part of file that is hearth.db's map is given apart (smaps).
func benchVolume(ctx context.Context, b *bench) []row {
	metric := fmt.Sprintf("RSS after %s messages in %d rooms (%d concurrent senders)", count(b.cfg.volumeMsgs), b.cfg.volumeRooms, b.cfg.workers)
	const target = "anon ≤ 64 MiB"
	fail := func(err error) []row { return []row{errRow(metric, target, err)} }
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	w := min(b.cfg.workers, b.cfg.volumeRooms)
	users, err := b.registerMany(ctx, d, "vol", w)
	if err != nil {
		return fail(err)
	}
	rooms := make([]string, b.cfg.volumeRooms)
	if err := parallel(len(rooms), 8, func(r int) (err error) { rooms[r], err = b.createRoom(ctx, users[r%w]); return }); err != nil {
		return fail(err)
	}
	cpu := startCPU(d.pid)
	elapsed, err := b.fill(ctx, users, rooms, b.cfg.volumeMsgs, func(k int) (*user, string) {
		r := k % len(rooms)
		return users[r%w], rooms[r]
	})
	if err != nil {
		return fail(err)
	}
	cpuUse := cpu.String()
	rss, err1 := rssDetail(d.pid)
	hwm, err2 := memKB(d.pid, "VmHWM")
	dbKB, err3 := mappedKB(d.pid, filepath.Join(d.dataDir, "hearth.db"))
	if err1 != nil || err2 != nil || err3 != nil {
		return fail(fmt.Errorf("read /proc: %v %v %v", err1, err2, err3))
	}
	v := fmt.Sprintf("%s (file: hearth.db's map %.1f; peak %s; db file %.0f MiB; filled in %.1f s = %.0f events/s; %s)", rss,
		float64(dbKB)/1024, mb(hwm), float64(d.dbSize())/(1<<20), elapsed.Seconds(), float64(b.cfg.volumeMsgs)/elapsed.Seconds(), cpuUse)
	return []row{{metric: metric, value: v, target: target, nums: rssFigs(d.pid)}}
}

// mappedKB is the resident KiB of pid's mappings of the file at path
// (the Rss lines of /proc/PID/smaps under that path's mappings): for
// hearth.db, the pages of bbolt's read-only map, which the kernel may
// drop at any time and reads back from the file.
func mappedKB(pid int, path string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	var kb int64
	mine := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			mine = len(f) >= 6 && f[5] == path
			continue
		}
		if mine && len(f) >= 2 && f[0] == "Rss:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("smaps of %d: %q: %w", pid, line, err)
			}
			kb += n
		}
	}
	return kb, nil
}

// benchHistory measures reads in a big room: one user alone in a room
// with -history-msgs messages (sent with -workers in flight). It then
// times GET /messages?dir=b&limit=100 from the newest event (median of
// 20; the chunk must hold 100 events) and a full initial /sync with the
// default filter (timeline limit 10, so this is mostly the cost of the
// room's state and the account's other data; median of 5).
func benchHistory(ctx context.Context, b *bench) []row {
	k := count(b.cfg.historyMsgs)
	mMetric := fmt.Sprintf("GET /messages dir=b limit=100, room with %s events (median of 20)", k)
	sMetric := fmt.Sprintf("initial /sync, 1 user in a room with %s events (median of 5)", k)
	const target = "(none)"
	fail := func(err error) []row { return []row{errRow(mMetric, target, err), errRow(sMetric, target, err)} }
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	u, err := b.register(ctx, d, "history")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createRoom(ctx, u)
	if err != nil {
		return fail(err)
	}
	if _, err := b.fill(ctx, []*user{u}, []string{roomID}, b.cfg.historyMsgs, func(int) (*user, string) { return u, roomID }); err != nil {
		return fail(err)
	}
	var mts, sts []time.Duration
	for range 20 {
		t := time.Now()
		n, err := b.messages(ctx, u, roomID, 100)
		if err != nil {
			return fail(err)
		}
		mts = append(mts, time.Since(t))
		if n != 100 {
			return fail(fmt.Errorf("/messages returned %d events, want 100", n))
		}
	}
	for range 5 {
		t := time.Now()
		r, err := b.sync(ctx, u, "", "", 0)
		if err != nil {
			return fail(err)
		}
		sts = append(sts, time.Since(t))
		if _, ok := r.Rooms.Join[roomID]; !ok {
			return fail(fmt.Errorf("initial /sync lacks the room"))
		}
	}
	first := mts[0]
	slices.Sort(mts)
	slices.Sort(sts)
	return []row{
		{metric: mMetric, value: fmt.Sprintf("%s (first %s)", ms(mts[len(mts)/2]), msNum(first)), target: target,
			nums: figs(fig("", msF(mts[len(mts)/2]), "ms"))},
		{metric: sMetric, value: fmt.Sprintf("%s (min %s, max %s)", ms(sts[len(sts)/2]), msNum(sts[0]), msNum(sts[len(sts)-1])), target: target,
			nums: figs(fig("", msF(sts[len(sts)/2]), "ms"))},
	}
}
