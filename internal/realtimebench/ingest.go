package realtimebench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// IngestOptions configure Ingest.
type IngestOptions struct {
	// URL is the GraphQL endpoint, http://host:port/query.
	URL string
	// Secret is the API client secret (ORDERS_WRITE) sent as bearer.
	Secret string
	// Query is the IngestOrder document.
	Query string
	// Members are member numbers; each order goes to a random one.
	Members []string
	// Stores are store codes; each order goes to a random one.
	Stores []string
	// Concurrency is the number of clients, each with one request in
	// flight at a time.
	Concurrency int
	// Duration is how long the clients send.
	Duration time.Duration
	// Nonce makes the external ids of a run unique.
	Nonce string
	// PaidAt is the orders' payment time.
	PaidAt time.Time
}

// IngestResult is what Ingest measured.
type IngestResult struct {
	Requests   int64   `json:"requests"`
	OK         int64   `json:"ok"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"` // good responses per second
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	FirstError string  `json:"first_error"`
}

// Ingest sends new orders (one to three items, paid in cash) through
// ingestOrder from Concurrency clients for Duration. A response is good
// when it has no "errors" and contains "duplicate":false.
func Ingest(ctx context.Context, o IngestOptions) IngestResult {
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	prefix, _ := json.Marshal(o.Query)
	var (
		mu       sync.Mutex
		res      IngestResult
		lats     []time.Duration
		wg       sync.WaitGroup
		start    = time.Now()
		deadline = start.Add(o.Duration)
		paidAt   = o.PaidAt.UTC().Format(time.RFC3339)
	)
	for w := range o.Concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			var mine []time.Duration
			var ok, failed int64
			var firstErr string
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				body := orderBody(prefix, o, rng, fmt.Sprintf("%s-%d-%d", o.Nonce, w, n), paidAt)
				t0 := time.Now()
				err := postOrder(ctx, client, o.URL, o.Secret, body)
				mine = append(mine, time.Since(t0))
				if err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				ok++
			}
			mu.Lock()
			lats = append(lats, mine...)
			res.OK += ok
			res.Failed += failed
			if res.FirstError == "" {
				res.FirstError = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Requests = res.OK + res.Failed
	res.RPS = float64(res.OK) / res.Seconds
	ps := Percentiles(lats, 0.50, 0.90, 0.99, 1)
	res.P50ms, res.P90ms, res.P99ms, res.MaxMs = ms(ps[0]), ms(ps[1]), ms(ps[2]), ms(ps[3])
	return res
}

func orderBody(query []byte, o IngestOptions, rng *rand.Rand, externalID, paidAt string) []byte {
	var items []string
	var total int
	for i := range 1 + rng.IntN(3) {
		q, u := 1+rng.IntN(3), 100+rng.IntN(4901)
		total += q * u
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%d","name":"bench item %d","category":"bench","quantity":%d,"unitPrice":%d,"amount":%d}`,
			1+rng.IntN(5000), i+1, q, u, q*u))
	}
	var b bytes.Buffer
	b.WriteString(`{"query":`)
	b.Write(query)
	fmt.Fprintf(&b, `,"variables":{"input":{"externalId":%q,"channel":"POS","storeCode":%q,"member":{"memberNo":%q},`+
		`"paidAt":%q,"amount":%d,"items":[%s],"payments":[{"method":"CASH","amount":%d}]}}}`,
		externalID, o.Stores[rng.IntN(len(o.Stores))], o.Members[rng.IntN(len(o.Members))],
		paidAt, total, strings.Join(items, ","), total)
	return b.Bytes()
}

func postOrder(ctx context.Context, c *http.Client, url, secret string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := c.Do(req)
	if err != nil {
		return trimAddr(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || bytes.Contains(raw, []byte(`"errors"`)) || !bytes.Contains(raw, []byte(`"duplicate":false`)) {
		if len(raw) > 300 {
			raw = raw[:300]
		}
		return fmt.Errorf("HTTP %d: %s", res.StatusCode, raw)
	}
	return nil
}
