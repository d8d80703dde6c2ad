package obs

import (
	"database/sql"
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// maxOperationLabels caps the distinct operation names kept as labels;
// names beyond it (or not shaped like names) count as "other", so a caller
// inventing names cannot blow up the metrics' cardinality.
const maxOperationLabels = 256

var operationName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Metrics are the server's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry   *prometheus.Registry
	Requests   *prometheus.CounterVec   // operation, outcome
	Latency    *prometheus.HistogramVec // operation
	Errors     *prometheus.CounterVec   // code
	Websockets prometheus.Gauge

	mu    sync.Mutex
	names map[string]struct{}
}

// NewMetrics registers the metrics, the Go runtime's and the database
// pool's.
func NewMetrics(db *sql.DB, statements func() int64) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onemember_graphql_requests_total", Help: "GraphQL operations by name and outcome (ok, error).",
		}, []string{"operation", "outcome"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onemember_graphql_request_duration_seconds",
			Help:    "GraphQL operation latency by name.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"operation"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onemember_graphql_errors_total", Help: "GraphQL errors by extensions.code.",
		}, []string{"code"}),
		Websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onemember_websockets_open", Help: "Open GraphQL websocket connections.",
		}),
		names: map[string]struct{}{},
	}
	m.Registry.MustRegister(m.Requests, m.Latency, m.Errors, m.Websockets,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if statements != nil {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "onemember_sql_statements_total", Help: "SQL statements sent to PostgreSQL (transaction control included).",
		}, func() float64 { return float64(statements()) }))
	}
	if db != nil {
		m.Registry.MustRegister(collectors.NewDBStatsCollector(db, "onemember"))
	}
	return m
}

// OperationLabel returns the label value for an operation name.
func (m *Metrics) OperationLabel(name string) string {
	if name == "" {
		return "anonymous"
	}
	if !operationName.MatchString(name) {
		return "other"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.names[name]; ok {
		return name
	}
	if len(m.names) >= maxOperationLabels {
		return "other"
	}
	m.names[name] = struct{}{}
	return name
}
