package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports; reading it properly needs
// sysconf(_SC_CLK_TCK), i.e. cgo.
const clockTicks = 100

// memKB reads one "Vm*" line (VmRSS: resident set now, VmHWM: peak
// resident set) from /proc/PID/status, in kB.
func memKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num := strings.Fields(rest) // "12345 kB"
		if len(num) == 0 {
			break
		}
		return strconv.ParseInt(num[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// cpuTicks returns utime+stime of the process from /proc/PID/stat: CPU
// time spent in user and kernel mode, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces;
	// fields after the last ')' start at field 3 (state).
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return utime + stime, nil
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

// cpuMeter measures CPU use of the daemon and of this bench process over
// an interval, to show who used the machine's cores during a load test
// (the load generator shares them with the server).
type cpuMeter struct {
	pid        int
	name       string // the server's, in String; "" is hearth
	t0         time.Time
	srv, self0 int64
}

func startCPU(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid, t0: time.Now()}
	m.srv, _ = cpuTicks(pid)
	m.self0, _ = cpuTicks(os.Getpid())
	return m
}

// String reports both as percent of one core since startCPU.
func (m *cpuMeter) String() string {
	wall := time.Since(m.t0).Seconds()
	srv, err1 := cpuTicks(m.pid)
	self, err2 := cpuTicks(os.Getpid())
	if err1 != nil || err2 != nil || wall <= 0 {
		return "CPU n/a"
	}
	name := m.name
	if name == "" {
		name = "hearth"
	}
	return fmt.Sprintf("CPU: %s %.0f%%, bench %.0f%% of one core", name, 100*float64(srv-m.srv)/clockTicks/wall,
		100*float64(self-m.self0)/clockTicks/wall)
}

// srvCPU is the daemon's CPU time (user+system) since startCPU.
func (m *cpuMeter) srvCPU() (time.Duration, error) {
	srv, err := cpuTicks(m.pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(float64(srv-m.srv) / clockTicks * float64(time.Second)), nil
}

// rssDetail is VmRSS split into RssAnon (heap, stacks: memory the daemon
// allocated) and RssFile (file pages mapped and resident: the binary's
// text and bbolt's mmap of hearth.db, which the kernel can drop).
func rssDetail(pid int) (string, error) {
	var kb [3]int64
	for i, f := range []string{"VmRSS", "RssAnon", "RssFile"} {
		v, err := memKB(pid, f)
		if err != nil {
			return "", err
		}
		kb[i] = v
	}
	return fmt.Sprintf("%s [anon %.1f + file %.1f]", mb(kb[0]), float64(kb[1])/1024, float64(kb[2])/1024), nil
}
