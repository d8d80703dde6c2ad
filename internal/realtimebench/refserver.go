package realtimebench

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/onemember/onemember/internal/platform/procstat"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// RefHandler is the reference for the memory of idle subscriptions: a bare
// gorilla/websocket server speaking just enough graphql-transport-ws for
// Hold (connection_init is acknowledged, ping answered, subscribe accepted
// and never answered). Each connection has 1 KiB read and write buffers and
// one goroutine, its reader; the handler goroutine returns after the
// upgrade. With writePool the write buffer is borrowed from a pool only
// while writing, as internal/platform/wsgorilla does for the server.
//
// It serves /query (the websocket), /readyz and /metrics (the Go runtime
// and process collectors, and refserver_websockets_open).
func RefHandler(writePool bool) http.Handler {
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		Subprotocols:    []string{Subprotocol},
		CheckOrigin:     func(*http.Request) bool { return true },
	}
	if writePool {
		up.WriteBufferPool = &sync.Pool{}
	}
	reg := prometheus.NewRegistry()
	open := prometheus.NewGauge(prometheus.GaugeOpts{Name: "refserver_websockets_open", Help: "Open websocket connections."})
	reg.MustRegister(open, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.HandleFunc("/query", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // gorilla answered with an HTTP error
		}
		open.Inc()
		go func() {
			defer open.Dec()
			defer c.Close()
			refServe(c)
		}()
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /debug/free-memory", procstat.FreeMemory)
	return mux
}

var (
	ackMsg  = []byte(`{"type":"connection_ack"}`)
	pongMsg = []byte(`{"type":"pong"}`)
)

func refServe(c *websocket.Conn) {
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(data, &m) != nil {
			return
		}
		switch m.Type {
		case "connection_init":
			err = c.WriteMessage(websocket.TextMessage, ackMsg)
		case "ping":
			err = c.WriteMessage(websocket.TextMessage, pongMsg)
		}
		if err != nil {
			return
		}
	}
}
