// Command rtbench runs the processes of scripts/bench-realtime.sh besides
// the server under test (package realtimebench):
//
//	rtbench clients   -url ws://127.0.0.1:P/query -tokens FILE [-n N] [-offset K]
//	                  hold N subscribed connections; prints "connected N failed F"
//	                  once every handshake is done, then a JSON summary on SIGTERM
//	rtbench refserver -addr 127.0.0.1:P [-write-pool=true]
//	                  the bare gorilla/websocket reference server
//	rtbench ingest    -url http://127.0.0.1:P/query -secret-file F -members-file F
//	                  -stores-file F [-members N] [-c 32] [-d 20s] [-warmup 5s]
//	                  ingestOrder load; prints a JSON result
//	rtbench deliver   -url ws://127.0.0.1:P/query -db DSN -tokens FILE [-n 5000]
//	                  [-steps "1000 2500 5000 5000x10"] [-d 20s] [-notify=true] ...
//	                  commit-to-receive latency; prints a JSON result per step
//
// The client operations are read from -clients-dir (default
// $ONEMEMBER_CLIENTS_DIR, else ../shared/clients).
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq"

	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/realtimebench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rtbench clients|refserver|ingest|deliver [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "clients":
		err = clients(ctx, args)
	case "refserver":
		err = refserver(ctx, args)
	case "ingest":
		err = ingest(ctx, args)
	case "deliver":
		err = deliver(ctx, args)
	default:
		err = fmt.Errorf("unknown command %q (clients, refserver, ingest, deliver)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtbench:", err)
		os.Exit(1)
	}
}

func defaultClientsDir() string {
	if d := os.Getenv("ONEMEMBER_CLIENTS_DIR"); d != "" {
		return d
	}
	return "../shared/clients"
}

func readLines(path string, offset, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for i := 0; sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if i >= offset {
			out = append(out, line)
		}
		i++
		if n > 0 && len(out) == n {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n > 0 && len(out) < n {
		return nil, fmt.Errorf("%s: %d lines after the first %d, want %d", path, len(out), offset, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no lines", path)
	}
	return out, nil
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

func clients(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("clients", flag.ExitOnError)
	url := fs.String("url", "", "websocket endpoint ws://host:port/query")
	tokens := fs.String("tokens", "", "file of member access tokens, one per line")
	n := fs.Int("n", 0, "connections (tokens used; 0: all)")
	offset := fs.Int("offset", 0, "skip this many tokens first")
	dialers := fs.Int("dialers", 64, "handshakes in flight")
	dir := fs.String("clients-dir", defaultClientsDir(), "shared/clients")
	_ = fs.Parse(args)
	query, err := realtimebench.ClientOperation(*dir, "app/events.graphql", "MemberEvents")
	if err != nil {
		return err
	}
	toks, err := readLines(*tokens, *offset, *n)
	if err != nil {
		return err
	}
	started := time.Now()
	p := realtimebench.Hold(ctx, realtimebench.HoldOptions{URL: *url, Query: query, Tokens: toks, Dialers: *dialers})
	st := p.Stats()
	fmt.Printf("connected %d failed %d in %.1fs\n", st.Connected, st.Failed, time.Since(started).Seconds())
	if st.Failed > 0 {
		fmt.Fprintf(os.Stderr, "rtbench clients: %d connections failed: %s\n", st.Failed, st.Reasons)
	}
	<-ctx.Done()
	st = p.Stats() // before Close: what the server did to the connections
	p.Close()
	return printJSON(st)
}

func refserver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("refserver", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	pool := fs.Bool("write-pool", true, "borrow write buffers from a pool, as the server's wsgorilla does")
	_ = fs.Parse(args)
	srv := &http.Server{Addr: *addr, Handler: realtimebench.RefHandler(*pool), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func ingest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	url := fs.String("url", "", "GraphQL endpoint http://host:port/query")
	secretFile := fs.String("secret-file", "", "file with the API client secret")
	membersFile := fs.String("members-file", "", "member numbers, one per line")
	nMembers := fs.Int("members", 0, "use the first N member numbers (0: all)")
	storesFile := fs.String("stores-file", "", "store codes, one per line")
	conc := fs.Int("c", 32, "concurrent clients")
	dur := fs.Duration("d", 20*time.Second, "measured duration")
	warm := fs.Duration("warmup", 0, "unmeasured warm-up first")
	nonce := fs.String("nonce", fmt.Sprintf("rt%d", time.Now().UnixNano()), "external id prefix")
	dir := fs.String("clients-dir", defaultClientsDir(), "shared/clients")
	_ = fs.Parse(args)
	query, err := realtimebench.ClientOperation(*dir, "pos/checkout.graphql", "IngestOrder")
	if err != nil {
		return err
	}
	secret, err := readLines(*secretFile, 0, 1)
	if err != nil {
		return err
	}
	members, err := readLines(*membersFile, 0, *nMembers)
	if err != nil {
		return err
	}
	stores, err := readLines(*storesFile, 0, 0)
	if err != nil {
		return err
	}
	o := realtimebench.IngestOptions{URL: *url, Secret: secret[0], Query: query, Members: members, Stores: stores,
		Concurrency: *conc, PaidAt: time.Now().Add(-time.Minute)}
	if *warm > 0 {
		o.Duration, o.Nonce = *warm, *nonce+"w"
		if r := realtimebench.Ingest(ctx, o); r.Failed > 0 {
			fmt.Fprintf(os.Stderr, "rtbench ingest: %d of %d warm-up requests failed: %s\n", r.Failed, r.Requests, r.FirstError)
		}
	}
	o.Duration, o.Nonce = *dur, *nonce
	return printJSON(realtimebench.Ingest(ctx, o))
}

func deliver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deliver", flag.ExitOnError)
	url := fs.String("url", "", "websocket endpoint ws://host:port/query")
	dsn := fs.String("db", os.Getenv("DATABASE_URL"), "the server's database")
	tokens := fs.String("tokens", "", "file of member access tokens, one per line")
	n := fs.Int("n", 5000, "subscribers (distinct members)")
	steps := fs.String("steps", "5000", "measured steps, space-separated: RATE (events per second, one event per "+
		"transaction) or RATExBATCH (BATCH events of distinct members per transaction)")
	dur := fs.Duration("d", 30*time.Second, "duration of each step")
	workers := fs.Int("workers", 8, "concurrent writers")
	notify := fs.Bool("notify", true, "wake an event bus after each commit, whose coalesced NOTIFY reaches the server "+
		"as another replica's would; false leaves delivery to the server's safety tailer")
	settle := fs.Duration("settle", 3*time.Second, "pause after subscribing")
	warm := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up at the first step's rate (every warm-up event must arrive)")
	drain := fs.Duration("drain", 10*time.Second, "longest wait for a step's events after it")
	dialers := fs.Int("dialers", 64, "handshakes in flight")
	serverPID := fs.Int("server-pid", 0, "the server's process id, for its CPU time per step")
	dir := fs.String("clients-dir", defaultClientsDir(), "shared/clients")
	_ = fs.Parse(args)
	var plan []realtimebench.Step
	for _, f := range strings.Fields(*steps) {
		rate, batch, _ := strings.Cut(f, "x")
		st := realtimebench.Step{Batch: 1, Duration: *dur}
		var err error
		if st.Rate, err = strconv.ParseFloat(rate, 64); err != nil || st.Rate <= 0 {
			return fmt.Errorf("-steps: bad rate in %q", f)
		}
		if batch != "" {
			if st.Batch, err = strconv.Atoi(batch); err != nil || st.Batch < 1 {
				return fmt.Errorf("-steps: bad batch in %q", f)
			}
		}
		plan = append(plan, st)
	}
	if len(plan) == 0 {
		return errors.New("-steps: no step")
	}
	query, err := realtimebench.ClientOperation(*dir, "app/events.graphql", "MemberEvents")
	if err != nil {
		return err
	}
	toks, err := readLines(*tokens, 0, *n)
	if err != nil {
		return err
	}
	db, err := sql.Open("postgres", *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(*workers + 4)
	db.SetMaxIdleConns(*workers + 4)
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	g := realtimebench.GenOptions{Workers: *workers, Reason: "rtbench"}
	if *notify {
		// A bus without listener: it only sends the coalesced NOTIFY of
		// the members Wake names, and has no subscribers of its own.
		bus := eventbus.New(db, "", slog.New(slog.DiscardHandler), eventbus.Options{})
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = bus.Run(bctx); close(done) }()
		defer func() { cancel(); <-done }()
		g.Waker = bus
	}
	rs, err := realtimebench.Deliver(ctx, realtimebench.DeliverOptions{
		URL: *url, Query: query, DB: db, Tokens: toks, Dialers: *dialers,
		Settle: *settle, Warmup: *warm, Drain: *drain, Gen: g, Steps: plan, ServerPID: *serverPID,
	})
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := printJSON(r); err != nil {
			return err
		}
	}
	return nil
}
