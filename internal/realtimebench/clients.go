package realtimebench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocol is the websocket subprotocol the clients speak.
const Subprotocol = "graphql-transport-ws"

// HoldOptions configure Hold.
type HoldOptions struct {
	// URL is the websocket endpoint, ws://host:port/query.
	URL string
	// Query is the subscription document (MemberEvents).
	Query string
	// Tokens are the member access tokens, one connection each.
	Tokens []string
	// After, when not nil, holds each connection's "after" cursor (""
	// sends null).
	After []string
	// Dialers bounds the handshakes in flight (default 64).
	Dialers int
	// Timeout bounds each handshake (default 30 s).
	Timeout time.Duration
	// OnEvent, if set, is called by connection i's reader for every "next"
	// message, with the time it was read and its payload.
	OnEvent func(i int, at time.Time, payload []byte)
}

// Pool is a set of held connections.
type Pool struct {
	o HoldOptions

	connected, failed, ended, events atomic.Int64
	closing                          atomic.Bool

	mu     sync.Mutex
	conns  []*websocket.Conn
	reason map[string]int // why connections failed or ended
	wg     sync.WaitGroup
}

// Hold opens one connection per token, Dialers at a time: websocket
// upgrade, connection_init with {"authorization": "Bearer <token>"},
// connection_ack, then subscribe (id "1") to Query. It returns once every
// handshake has succeeded or failed; the connections stay open, reading
// events and answering pings, until Close.
func Hold(ctx context.Context, o HoldOptions) *Pool {
	if o.Dialers <= 0 {
		o.Dialers = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	p := &Pool{o: o, conns: make([]*websocket.Conn, len(o.Tokens)), reason: map[string]int{}}
	sem := make(chan struct{}, o.Dialers)
	var ready sync.WaitGroup
	for i := range o.Tokens {
		ready.Add(1)
		p.wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer p.wg.Done()
			c, err := p.handshake(ctx, i)
			<-sem
			if err != nil {
				p.failed.Add(1)
				p.note(err.Error())
				ready.Done()
				return
			}
			p.mu.Lock()
			p.conns[i] = c
			p.mu.Unlock()
			p.connected.Add(1)
			ready.Done()
			p.read(i, c)
		}()
	}
	ready.Wait()
	return p
}

type envelope struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (p *Pool) handshake(ctx context.Context, i int) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	d := websocket.Dialer{
		Subprotocols:     []string{Subprotocol},
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		HandshakeTimeout: p.o.Timeout,
	}
	c, resp, err := d.DialContext(ctx, p.o.URL, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: HTTP %s", resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", trimAddr(err))
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	_ = c.SetWriteDeadline(deadline)
	fail := func(err error) (*websocket.Conn, error) {
		_ = c.Close()
		return nil, err
	}
	init, _ := json.Marshal(map[string]string{"authorization": "Bearer " + p.o.Tokens[i]})
	if err := c.WriteJSON(envelope{Type: "connection_init", Payload: init}); err != nil {
		return fail(fmt.Errorf("connection_init: %w", err))
	}
	for acked := false; !acked; {
		var m envelope
		if err := c.ReadJSON(&m); err != nil {
			return fail(fmt.Errorf("awaiting connection_ack: %w", closeReason(err)))
		}
		switch m.Type {
		case "connection_ack":
			acked = true
		case "ping":
			if err := c.WriteJSON(envelope{Type: "pong"}); err != nil {
				return fail(err)
			}
		case "pong", "ka":
		default:
			return fail(fmt.Errorf("%s before connection_ack", m.Type))
		}
	}
	vars := map[string]any{}
	if p.o.After != nil {
		if a := p.o.After[i]; a != "" {
			vars["after"] = a
		} else {
			vars["after"] = nil
		}
	}
	sub, _ := json.Marshal(map[string]any{"query": p.o.Query, "variables": vars})
	if err := c.WriteJSON(envelope{ID: "1", Type: "subscribe", Payload: sub}); err != nil {
		return fail(fmt.Errorf("subscribe: %w", err))
	}
	_ = c.SetReadDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// read is connection i's reader until the connection ends.
func (p *Pool) read(i int, c *websocket.Conn) {
	for {
		_, data, err := c.ReadMessage()
		at := time.Now()
		if err != nil {
			if !p.closing.Load() {
				p.ended.Add(1)
				p.note("ended: " + closeReason(err).Error())
			}
			return
		}
		var m envelope
		if err := json.Unmarshal(data, &m); err != nil {
			p.note("undecodable message")
			continue
		}
		switch m.Type {
		case "next":
			p.events.Add(1)
			if p.o.OnEvent != nil {
				p.o.OnEvent(i, at, m.Payload)
			}
		case "ping":
			// The reader is the connection's only writer after the handshake.
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteJSON(envelope{Type: "pong"}); err != nil && !p.closing.Load() {
				p.note("pong: " + err.Error())
			}
		case "error":
			p.note("subscription error: " + string(m.Payload))
		case "complete":
			p.note("subscription completed by the server")
		}
	}
}

func (p *Pool) note(reason string) {
	p.mu.Lock()
	p.reason[reason]++
	p.mu.Unlock()
}

// Close drops every connection (TCP close, no close handshake: the server
// sees the peer go away, as when a phone loses its network) and waits for
// the readers.
func (p *Pool) Close() {
	p.closing.Store(true)
	p.mu.Lock()
	for _, c := range p.conns {
		if c != nil {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// PoolStats are a Pool's counters.
type PoolStats struct {
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	Ended     int64 `json:"ended"` // closed by the server or the network before Close
	Events    int64 `json:"events"`
	// Reasons lists why connections failed or ended, most frequent first.
	Reasons string `json:"reasons"`
}

// Stats returns the counters so far.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	type kv struct {
		k string
		v int
	}
	var rs []kv
	for k, v := range p.reason {
		rs = append(rs, kv{k, v})
	}
	p.mu.Unlock()
	sort.Slice(rs, func(a, b int) bool { return rs[a].v > rs[b].v || rs[a].v == rs[b].v && rs[a].k < rs[b].k })
	var b strings.Builder
	for i, r := range rs {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more kinds", len(rs)-5)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d× %s", r.v, r.k)
	}
	return PoolStats{
		Connected: p.connected.Load(), Failed: p.failed.Load(), Ended: p.ended.Load(),
		Events: p.events.Load(), Reasons: b.String(),
	}
}

// closeReason reduces gorilla's close errors to their code and text.
func closeReason(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("close %d %s", ce.Code, ce.Text)
	}
	return trimAddr(err)
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// trimAddr removes loopback ports from an error so that errors of many
// connections group together.
func trimAddr(err error) error {
	return errors.New(addrRE.ReplaceAllString(err.Error(), "127.0.0.1:*"))
}

// MemberIDOfToken returns the subject (member id) of an access token. It
// does not verify the token: the server does.
func MemberIDOfToken(tok string) (int, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0, errors.New("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, fmt.Errorf("JWT claims: %w", err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("JWT claims: %w", err)
	}
	id, err := strconv.Atoi(c.Sub)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("JWT subject %q is not a member id", c.Sub)
	}
	return id, nil
}

// Operation returns operation name of the client document file, from its
// "query|mutation|subscription NAME" line to the next line that is a lone
// closing brace, as a client sends it.
func Operation(file, name string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	start := regexp.MustCompile(`(?m)^(query|mutation|subscription) ` + regexp.QuoteMeta(name) + `[ ({]`).FindIndex(raw)
	if start == nil {
		return "", fmt.Errorf("operation %s not found in %s", name, file)
	}
	rest := string(raw[start[0]:])
	end := strings.Index(rest, "\n}")
	if end < 0 {
		return "", fmt.Errorf("operation %s in %s has no closing brace at the start of a line", name, file)
	}
	return rest[:end+2], nil
}

// ClientOperation reads operation name of shared/clients/<rel>.
func ClientOperation(clientsDir, rel, name string) (string, error) {
	return Operation(filepath.Join(clientsDir, rel), name)
}
