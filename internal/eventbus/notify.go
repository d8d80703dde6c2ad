package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// notifyAllPayload asks every replica to read all of its subscribers.
const notifyAllPayload = "*"

// flushTimeout bounds the last notification sent while stopping.
const flushTimeout = time.Second

// notifyLoop is the notifier: it sends the member ids queued by Wake to
// the other replicas, at most one statement per NotifyEvery, on a
// connection of its own (so never inside a writer's transaction, and never
// waiting for a pool slot behind the writers).
func (b *Bus) notifyLoop(ctx context.Context) {
	var (
		conn *sql.Conn
		last time.Time
		wait time.Duration
	)
	defer func() {
		// Best effort: send what Wake queued just before the end.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if ids, all := b.takeNotify(); len(ids) > 0 || all {
			if conn == nil {
				conn, _ = b.notifyConn(fctx)
			}
			if conn != nil {
				if err := b.sendNotify(fctx, conn, notifyPayloads(ids, all)); err != nil {
					b.log.Debug("event bus: sending last notifications", "err", err)
				}
			}
		}
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.notifySig:
		}
		if d := b.opts.NotifyEvery - time.Since(last); d > 0 && !sleep(ctx, d) {
			return
		}
		ids, all := b.takeNotify()
		if len(ids) == 0 && !all {
			continue
		}
		last = time.Now()
		err := func() error {
			if conn == nil {
				c, err := b.notifyConn(ctx)
				if err != nil {
					return err
				}
				conn = c
			}
			return b.sendNotify(ctx, conn, notifyPayloads(ids, all))
		}()
		if err == nil {
			wait = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		// Other replicas still get these events through their tailers;
		// retrying only makes it sooner.
		wait = backoff(wait)
		b.log.Warn("event bus: sending notifications", "err", err, "members", len(ids), "all", all, "retry_in", wait)
		if conn != nil {
			_ = conn.Close()
			conn = nil
		}
		b.requeueNotify(ids, all)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// notifyConn takes a connection for the notifier and records its backend
// pid.
func (b *Bus) notifyConn(ctx context.Context) (*sql.Conn, error) {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a connection: %w", err)
	}
	var pid int64
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("reading backend pid: %w", err)
	}
	b.notifierPID.Store(pid)
	return conn, nil
}

// sendNotify sends payloads in one statement.
func (b *Bus) sendNotify(ctx context.Context, conn *sql.Conn, payloads []string) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	_, err := conn.ExecContext(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`,
		b.opts.NotifyChannel, pq.Array(payloads))
	if err != nil {
		return fmt.Errorf("notifying %s: %w", b.opts.NotifyChannel, err)
	}
	return nil
}

// takeNotify empties the notification queue.
func (b *Bus) takeNotify() (ids []int, all bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	all = b.notifyAll
	b.notifyAll = false
	if !all {
		ids = make([]int, 0, len(b.notifyIDs))
		for id := range b.notifyIDs {
			ids = append(ids, id)
		}
	}
	clear(b.notifyIDs)
	return ids, all
}

// requeueNotify puts unsent ids back in the queue.
func (b *Bus) requeueNotify(ids []int, all bool) {
	b.mu.Lock()
	if all {
		b.notifyAll = true
	}
	if !b.notifyAll {
		for _, id := range ids {
			b.notifyIDs[id] = struct{}{}
		}
		if len(b.notifyIDs) > notifyAllAbove {
			b.notifyAll = true
		}
	}
	if b.notifyAll {
		clear(b.notifyIDs)
	}
	b.mu.Unlock()
	signal(b.notifySig)
}

// notifyPayloads splits ids into comma-separated payloads of at most
// notifyMaxBytes each, or returns the single payload "*" when all is set
// or there are more than notifyAllAbove ids.
func notifyPayloads(ids []int, all bool) []string {
	if all || len(ids) > notifyAllAbove {
		return []string{notifyAllPayload}
	}
	var (
		out []string
		buf []byte
	)
	for _, id := range ids {
		n := len(strconv.AppendInt(nil, int64(id), 10))
		if len(buf) > 0 && len(buf)+1+n > notifyMaxBytes {
			out = append(out, string(buf))
			buf = buf[:0]
		}
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, int64(id), 10)
	}
	if len(buf) > 0 {
		out = append(out, string(buf))
	}
	return out
}

// parsePayload returns the member ids of a notification payload, or all
// for "*". Malformed ids are skipped.
func parsePayload(payload string) (ids []int, all bool) {
	if payload == notifyAllPayload {
		return nil, true
	}
	for part := range strings.SplitSeq(payload, ",") {
		if id, err := strconv.Atoi(strings.TrimSpace(part)); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, false
}

// listenLoop is the listener: it wakes local subscribers of the members
// other replicas notify about, and every local subscriber whenever
// notifications may have been lost. A listener that cannot connect only
// costs cross-replica latency (the tailer still delivers); local Wakes do
// not go through it.
func (b *Bus) listenLoop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	gap := make(chan struct{}, 1)
	l := pq.NewListener(b.dsn, listenMinRetry, listenMaxRetry, func(ev pq.ListenerEventType, err error) {
		// Called on pq's dispatch goroutine: must not block.
		switch ev {
		case pq.ListenerEventConnected:
			b.log.Debug("event bus: listener connected")
		case pq.ListenerEventReconnected:
			b.log.Info("event bus: listener reconnected")
			signal(gap)
		case pq.ListenerEventDisconnected:
			b.log.Warn("event bus: listener disconnected", "err", err)
		case pq.ListenerEventConnectionAttemptFailed:
			b.log.Warn("event bus: listener cannot connect", "err", err)
		}
	})

	var wg sync.WaitGroup
	listened := make(chan error, 1)
	// Listen blocks until the first connection succeeds or l is closed.
	wg.Go(func() { listened <- l.Listen(b.opts.NotifyChannel) })
	// Ping in its own goroutine: it waits for the server's reply, which
	// pq can only read while this loop keeps draining l.Notify.
	wg.Go(func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := l.Ping(); err != nil {
				b.log.Debug("event bus: listener ping failed", "err", err)
				signal(gap)
			}
		}
	})
	defer func() {
		cancel()
		// pq's goroutine ends by closing Notify and must not be left blocked
		// on a send meanwhile: drain while closing (Close waits for a Ping in
		// flight, whose reply pq reads only while Notify moves).
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for range l.Notify {
			}
		}()
		_ = l.Close() // unblocks Listen and Ping
		<-drained
		wg.Wait()
	}()

	for {
		select {
		case <-ctx.Done():
			return
		case err := <-listened:
			if err != nil {
				if ctx.Err() == nil {
					b.log.Error("event bus: cannot listen; other replicas' events arrive through the tailer only",
						"channel", b.opts.NotifyChannel, "err", err)
				}
				continue
			}
			// Notifications sent before LISTEN took effect were missed.
			b.wakeAll()
		case <-gap:
			b.wakeAll()
		case n, ok := <-l.Notify:
			switch {
			case !ok:
				return
			case n == nil: // pq: the connection was re-established
				b.wakeAll()
			case int64(n.BePid) == b.notifierPID.Load():
				// Sent by this process, whose Wake already read them.
			default:
				ids, all := parsePayload(n.Extra)
				if all {
					b.wakeAll()
				} else {
					b.wakeLocal(ids)
				}
			}
		}
	}
}
