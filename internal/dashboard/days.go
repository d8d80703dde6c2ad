package dashboard

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/calendar"
)

// maxCachedDays bounds the days a replica keeps: two full ranges (an
// overview and the churn window of ChannelStats reach 912 days back).
const maxCachedDays = 2*MaxRangeDays + 200

// dayCache keeps each business day's sales, summed from its sales_daily
// rows, in memory: a 90-day overview would otherwise move some 5 MB of
// buyer bitmaps from PostgreSQL per request (a million members). A day is
// valid for the sales_days version it was read at; the refresher sets a
// new version in the transaction that rewrites any of the day's rows, so
// a request reads the versions of its days (one small query) and the
// rows of the days that changed since (usually today, or none).
type dayCache struct {
	mu   sync.Mutex
	days map[string]*daySales
	tick uint64
}

// daySales is one day's sales. Never changed once built; shared by
// concurrent requests.
type daySales struct {
	version int64
	used    uint64 // under dayCache.mu
	// units holds every business unit with a sales_daily row that day.
	units map[int64]*unitDay
	// buyers are all units' buyers.
	buyers *roaring.Bitmap
}

// unitDay is one business unit's day.
type unitDay struct {
	revenue, memberRevenue int64
	orders                 int
	// channels holds every channel with a row, zero sales included.
	channels map[string]*Breakdown
	buyers   *roaring.Bitmap
}

var emptyDay = &daySales{units: map[int64]*unitDay{}, buyers: roaring.New()}

func newDayCache() *dayCache { return &dayCache{days: map[string]*daySales{}} }

// get returns the days from to to (YYYY-MM-DD; days without sales map to
// an empty day), reading from q what the cache lacks.
func (c *dayCache) get(ctx context.Context, q *sql.DB, from, to calendar.Date) (map[string]*daySales, error) {
	rows, err := q.QueryContext(ctx, `SELECT day::text, version FROM sales_days WHERE day BETWEEN $1::date AND $2::date`,
		from.String(), to.String())
	if err != nil {
		return nil, fmt.Errorf("reading day versions: %w", err)
	}
	versions := map[string]int64{}
	for rows.Next() {
		var d string
		var v int64
		if err := rows.Scan(&d, &v); err != nil {
			rows.Close()
			return nil, err
		}
		versions[d] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]*daySales, len(versions))
	var stale []string
	c.mu.Lock()
	c.tick++
	for d, v := range versions {
		if x := c.days[d]; x != nil && x.version == v {
			x.used = c.tick
			out[d] = x
			continue
		}
		stale = append(stale, d)
	}
	c.mu.Unlock()
	if len(stale) > 0 {
		read, err := readDays(ctx, q, stale, versions)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		for d, x := range read {
			x.used = c.tick
			c.days[d] = x
			out[d] = x
		}
		c.evict()
		c.mu.Unlock()
	}
	for d := from; !to.Before(d); d = d.AddDays(1) {
		if out[d.String()] == nil {
			out[d.String()] = emptyDay
		}
	}
	return out, nil
}

// evict drops the least recently used days beyond maxCachedDays (under
// mu).
func (c *dayCache) evict() {
	for len(c.days) > maxCachedDays {
		var oldest string
		var at uint64
		for d, x := range c.days {
			if oldest == "" || x.used < at {
				oldest, at = d, x.used
			}
		}
		delete(c.days, oldest)
	}
}

// readDays reads the sales_daily rows of days and sums them per day and
// business unit. A day's rows may be newer than the version read before
// them (a refresh committed in between): the day is then read again at
// the next request, never kept stale.
func readDays(ctx context.Context, q *sql.DB, days []string, versions map[string]int64) (map[string]*daySales, error) {
	rows, err := q.QueryContext(ctx, `SELECT day::text, business_unit_id, channel, revenue, member_revenue, orders, buyers
FROM sales_daily WHERE day = ANY($1::date[])`, pq.Array(days))
	if err != nil {
		return nil, fmt.Errorf("reading daily sales: %w", err)
	}
	defer rows.Close()
	out := make(map[string]*daySales, len(days))
	for _, d := range days {
		out[d] = &daySales{version: versions[d], units: map[int64]*unitDay{}}
	}
	parts := map[*unitDay][]*roaring.Bitmap{}
	for rows.Next() {
		var day, channel string
		var bu, revenue, memberRevenue int64
		var orders int
		var data []byte
		if err := rows.Scan(&day, &bu, &channel, &revenue, &memberRevenue, &orders, &data); err != nil {
			return nil, err
		}
		x := out[day]
		if x == nil {
			continue
		}
		u := x.units[bu]
		if u == nil {
			u = &unitDay{channels: map[string]*Breakdown{}}
			x.units[bu] = u
		}
		u.revenue += revenue
		u.memberRevenue += memberRevenue
		u.orders += orders
		addTo(u.channels, channel, revenue, orders)
		if len(data) > 0 {
			bm := roaring.New()
			if err := bm.UnmarshalBinary(data); err != nil {
				return nil, fmt.Errorf("reading a buyers bitmap: %w", err)
			}
			parts[u] = append(parts[u], bm)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, x := range out {
		all := make([]*roaring.Bitmap, 0, len(x.units))
		for _, u := range x.units {
			u.buyers = roaring.FastOr(parts[u]...)
			u.buyers.RunOptimize()
			all = append(all, u.buyers)
		}
		x.buyers = roaring.FastOr(all...)
		x.buyers.RunOptimize()
	}
	return out, nil
}
