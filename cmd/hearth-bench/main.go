// Command hearth-bench measures a built Hearth binary from the outside: it
// starts real daemons as child processes (fresh temp data dir, free
// loopback port each), drives them over the Client-Server API and reads
// their memory and CPU use from /proc. Each selected section runs -runs
// times (fresh daemons each time); every row is reported as the median and
// min–max of its figures over the runs, with the machine's load and a
// fsync probe around each run (report*.go). -write regenerates the block
// of docs/performance.md between its markers. `make bench` runs it with
// -runs 3 -write docs/performance.md.
//
// Sections (select with -sections, default all):
//
//	start       cold start: exec to first 200 on /versions
//	idle        RSS and CPU of an idle daemon; then of one with the default configuration in a network namespace (root)
//	send        PUT /send latency, one sequential client
//	throughput  events/s with many concurrent senders: one room each, then all in one room
//	sync        send-to-/sync delivery latency with many long pollers; the same against a minimal server (floor.go)
//	presence    idle long-poll wake-ups while one user has two sessions (online + unavailable)
//	volume      RSS after many messages in many rooms
//	history     /messages and initial /sync in a room with many events
//	search      POST /search over -volume-msgs messages
//	media       thumbnail of a 12 MP JPEG, media upload/download throughput
//	keys        POST /keys/query and /keys/claim with 50 devices
//	push        push evaluation per event in a room of 1,000 members (a Go benchmark in package push)
//	federation  message latency between two daemons, PDU ingest from a peer, joining a 10k-member remote room
//	abuse       descriptors, RSS and the owner's latency while idle, slowloris and half-open connections flood the listeners
//	turn        the TURN relay: idle wake-ups with no allocation, daemon CPU relaying 1 MB/s
//	appservice  application services: send → transaction latency, 100 ghosts sending, RSS per registered appservice
//	lan         people nearby on a LAN of network namespaces (root): exec → listed by a peer, mDNS packets per quiet hour, idle RSS/CPU, LAN message latency
//	slidingsync sliding sync (MSC4186), account in 1,000 rooms: first window, send → long-poll latency, memory per connection, idle CPU
//
// Linux only for the /proc figures; traffic goes only to 127.0.0.1, except
// the lan section's, which stays on the bridge of the namespaces it makes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config holds every knob; -quick changes the defaults of the slow ones.
type config struct {
	hearth        string
	sections      map[string]bool
	verbose       bool
	starts        int             // cold starts to take the median of
	idleRSSAfter  time.Duration   // when to read idle RSS
	idleCPUWindow time.Duration   // how long to sum idle CPU over
	sends         int             // sequential sends for the latency section
	senders       int             // concurrent senders for the throughput section
	duration      time.Duration   // throughput run length
	syncers       int             // long-polling clients in the sync section
	syncMsgs      int             // messages sent in the sync section
	syncInterval  time.Duration   // pause between those messages
	volumeMsgs    int             // messages for the volume section
	volumeRooms   int             // rooms they are spread over
	historyMsgs   int             // events in the history section's room
	workers       int             // concurrency used to fill rooms
	fedMsgs       int             // messages timed from hs1 to hs2 (federation section)
	fedInterval   time.Duration   // pause between those messages
	fedPDUs       int             // PDUs the peer sends hs1
	fedMembers    int             // members of the remote room hs3 joins
	abuseIdle     int             // idle keep-alives to the client API (abuse section)
	abuseSlow     int             // slowloris requests to the client API
	abuseFed      int             // half-open connections to the federation listener
	abuseReqs     int             // the owner's timed requests, idle and under abuse
	abuseHold     time.Duration   // how long the abuse is held before counting what the daemon closed
	ss            ssConfig        // slidingsync section (bench_slidingsync.go)
	timeout       time.Duration   // hard limit on the whole run
	runs          int             // runs of each section (report.go)
	once          map[string]bool // sections to run once whatever runs says
	quick         bool            // -quick, recorded in the report
	note          string          // free text for the report's header
	write         string          // docs file whose generated block to regenerate
}

var allSections = []string{"start", "idle", "send", "throughput", "sync", "presence", "volume", "history", "search", "media", "keys", "push", "federation", "abuse", "lan", "turn", "calls", "appservice", "slidingsync"}

func parseFlags() (*config, error) {
	c := &config{}
	quick := flag.Bool("quick", false, "short run: 3 s idle windows, 10k volume messages, 3 s throughput, 500 sends, 200 sync messages")
	secs := flag.String("sections", strings.Join(allSections, ","), "comma-separated sections to run: "+strings.Join(allSections, ","))
	flag.StringVar(&c.hearth, "hearth", "bin/hearth", "path to the hearth binary")
	flag.BoolVar(&c.verbose, "v", false, "log progress to stderr")
	flag.IntVar(&c.starts, "starts", 5, "cold starts (median reported)")
	flag.DurationVar(&c.idleRSSAfter, "idle-rss-after", 30*time.Second, "read idle RSS this long after ready")
	flag.DurationVar(&c.idleCPUWindow, "idle-cpu-window", 60*time.Second, "sum idle CPU over this window")
	flag.IntVar(&c.sends, "sends", 2000, "sequential sends for /send latency")
	flag.IntVar(&c.senders, "senders", 32, "concurrent senders (one user and one room each)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "throughput run length")
	flag.IntVar(&c.syncers, "syncers", 50, "long-polling /sync clients in one room")
	flag.IntVar(&c.syncMsgs, "sync-msgs", 500, "messages sent while the syncers listen")
	flag.DurationVar(&c.syncInterval, "sync-interval", 10*time.Millisecond, "pause between those messages")
	flag.IntVar(&c.volumeMsgs, "volume-msgs", 100000, "messages for the RSS-after-volume section")
	flag.IntVar(&c.volumeRooms, "volume-rooms", 100, "rooms the volume messages are spread over")
	flag.IntVar(&c.historyMsgs, "history-msgs", 10000, "events in the room for /messages and initial /sync")
	flag.IntVar(&c.workers, "workers", 32, "concurrent senders used to fill rooms")
	flag.IntVar(&c.fedMsgs, "fed-msgs", 200, "federation: messages timed from hs1 to a /sync on hs2")
	flag.DurationVar(&c.fedInterval, "fed-interval", 20*time.Millisecond, "federation: pause between those messages")
	flag.IntVar(&c.fedPDUs, "fed-pdus", 5000, "federation: PDUs the peer sends hs1 in transactions of 50")
	flag.IntVar(&c.fedMembers, "fed-members", 10000, "federation: members of the remote room hs3 joins")
	flag.IntVar(&c.abuseIdle, "abuse-idle", 5000, "abuse: idle keep-alive connections to the client API")
	flag.IntVar(&c.abuseSlow, "abuse-slow", 500, "abuse: slowloris requests (body never sent) to the client API")
	flag.IntVar(&c.abuseFed, "abuse-fed", 2000, "abuse: half-open connections to the federation listener")
	flag.IntVar(&c.abuseReqs, "abuse-reqs", 200, "abuse: the owner's timed requests, idle and under abuse")
	flag.DurationVar(&c.abuseHold, "abuse-hold", 35*time.Second, "abuse: hold the flood this long (past the 30 s body deadline) before counting what the daemon closed")
	c.ss.register(flag.CommandLine)
	flag.DurationVar(&c.timeout, "timeout", 20*time.Minute, "kill everything and fail after this long (unless set: 20m per run, one run of every section takes 12–15 min on 2 cores, depending on the load)")
	flag.IntVar(&c.runs, "runs", 3, "runs of each section; rows report the median and min–max (1 with -quick)")
	onceList := flag.String("once", "", "comma-separated sections to run once whatever -runs says (to shorten a full run; their captions say so)")
	flag.StringVar(&c.note, "note", "", "free text for the report's header, e.g. what else the machine was doing")
	flag.StringVar(&c.write, "write", "", "regenerate the block between <!-- bench:begin --> and <!-- bench:end --> of this file (and bench.json beside it)")
	flag.Parse()
	c.quick = *quick
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if *quick {
		quickDefault := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quickDefault("idle-rss-after", func() { c.idleRSSAfter = 3 * time.Second })
		quickDefault("idle-cpu-window", func() { c.idleCPUWindow = 3 * time.Second })
		quickDefault("sends", func() { c.sends = 500 })
		quickDefault("duration", func() { c.duration = 3 * time.Second })
		quickDefault("sync-msgs", func() { c.syncMsgs = 200 })
		quickDefault("volume-msgs", func() { c.volumeMsgs = 10000 })
		quickDefault("fed-msgs", func() { c.fedMsgs = 100 })
		quickDefault("fed-pdus", func() { c.fedPDUs = 1000 })
		quickDefault("fed-members", func() { c.fedMembers = 2000 })
		quickDefault("runs", func() { c.runs = 1 })
		c.ss.quick(set)
	}
	var err error
	if c.sections, err = sectionSet(*secs); err != nil {
		return nil, err
	}
	if c.once, err = sectionSet(*onceList); err != nil {
		return nil, fmt.Errorf("-once: %w", err)
	}
	if c.starts < 1 || c.sends < 1 || c.senders < 1 || c.syncers < 1 || c.syncMsgs < 1 ||
		c.volumeMsgs < 1 || c.volumeRooms < 1 || c.historyMsgs < 1 || c.workers < 1 ||
		c.fedMsgs < 1 || c.fedPDUs < 1 || c.fedMembers < 2 || c.abuseReqs < 1 {
		return nil, fmt.Errorf("counts must be at least 1")
	}
	if err := c.ss.valid(); err != nil {
		return nil, err
	}
	if c.runs < 1 {
		return nil, fmt.Errorf("-runs must be at least 1")
	}
	if !set["timeout"] {
		c.timeout *= time.Duration(c.runs)
	}
	return c, nil
}

// sectionSet parses a comma-separated list of section names.
func sectionSet(list string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSections, s) {
			return nil, fmt.Errorf("unknown section %q (have %s)", s, strings.Join(allSections, ","))
		}
		set[s] = true
	}
	return set, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "floor-serve" { // the sync section's reference server
		os.Exit(floorMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth-bench:", err)
		return 2
	}
	if _, err := os.Stat(cfg.hearth); err != nil {
		fmt.Fprintln(os.Stderr, "hearth-bench: no hearth binary:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	b, err := newBench(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth-bench:", err)
		return 1
	}
	defer b.cleanup() // stops every daemon still running and removes temp dirs
	// Last resort if something ignores ctx: stop daemons and exit anyway.
	watchdog := time.AfterFunc(cfg.timeout+30*time.Second, func() {
		fmt.Fprintln(os.Stderr, "hearth-bench: watchdog: run exceeded -timeout, killing daemons")
		b.cleanup()
		os.Exit(1)
	})
	defer watchdog.Stop()

	// once: a section that already reports a median of repeated
	// measurements runs once whatever -runs says, and its caption says so.
	sections := []struct {
		name string
		fn   func(context.Context, *bench) []row
		once string
	}{
		{"start", benchColdStart, fmt.Sprintf("once: median of %d cold starts inside", cfg.starts)},
		{"idle", benchIdle, ""},
		{"send", benchSendLatency, ""},
		{"throughput", benchThroughput, ""},
		{"sync", benchSyncDelivery, ""},
		{"presence", benchPresence, ""},
		{"volume", benchVolume, ""},
		{"history", benchHistory, ""},
		{"search", benchSearch, ""},
		{"media", benchMedia, ""},
		{"keys", benchKeys, ""},
		{"push", benchPush, ""},
		{"federation", benchFederation, ""},
		{"abuse", benchAbuse, ""},
		{"lan", benchLAN, ""},
		{"turn", benchTURN, ""},
		{"calls", benchCalls, ""},
		{"appservice", benchAppservice, ""},
		{"slidingsync", benchSlidingSync, ""},
	}
	start := time.Now()
	env := b.newRunEnv(start)
	var results []sectionResult
	failed := false
	for _, s := range sections {
		if !cfg.sections[s.name] {
			continue
		}
		n, once := cfg.runs, s.once
		if once == "" && cfg.once[s.name] && n > 1 {
			once = "once: -once"
		}
		if once != "" {
			n = 1
		}
		res := sectionResult{Name: s.name, Env: env, Once: once}
		var runs [][]row
		for i := range n {
			if ctx.Err() != nil {
				// A section never started keeps its earlier results in
				// -write's file; one cut short says so in its rows.
				break
			}
			b.logf("section %s, run %d of %d", s.name, i+1, n)
			p := takeProbe(b.root)
			t := time.Now()
			out := s.fn(ctx, b)
			b.stopAll() // no section leaves a daemon behind
			p.LoadEnd, p.Took = loadNum(), time.Since(t).Seconds()
			b.logf("section %s, run %d done in %s", s.name, i+1, time.Since(t).Round(time.Millisecond))
			res.Probes = append(res.Probes, p)
			runs = append(runs, out)
		}
		if len(runs) == 0 {
			fmt.Fprintf(os.Stderr, "hearth-bench: section %s skipped: %v\n", s.name, context.Cause(ctx))
			failed = true
			continue
		}
		for len(runs) < n { // cut short: the missing runs show as such
			runs = append(runs, nil)
		}
		res.Rows = mergeRuns(runs)
		for _, r := range res.Rows {
			if _, _, f := r.cells(); f {
				failed = true
			}
		}
		results = append(results, res)
	}
	fmt.Printf("hearth-bench report, %s, commit %s\nmachine: %s, Go %s\ncommand: %s\n%d run(s) per row; %s total, %d daemons of %s\n\n",
		env.Date, env.Commit, env.Machine, env.Go, env.Command, cfg.runs, time.Since(start).Round(time.Second), b.n, cfg.hearth)
	renderBlock(os.Stdout, results, true)
	if cfg.write != "" && len(results) > 0 {
		if err := writeReport(cfg.write, results); err != nil {
			fmt.Fprintln(os.Stderr, "hearth-bench: -write:", err)
			return 1
		}
		fmt.Printf("\nwrote %s and %s\n", cfg.write, benchJSONPath(cfg.write))
	}
	if failed {
		return 1
	}
	return 0
}
