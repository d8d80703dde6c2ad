package dcbench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteReport writes the Markdown report of the run; command is how it
// was started.
func (r *Result) WriteReport(w io.Writer, command string) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	m, o := r.Machine, r.Options

	p("## OneMember data centre benchmark, %s\n\n", r.Started.UTC().Format("Mon Jan 2 15:04:05 UTC 2006"))
	p("- machine: %d CPUs (nproc), %s, %.1f GiB RAM; PostgreSQL %s; Go %s; load average %s at the start, %s before the measurements, %s at the end\n",
		m.CPUs, orUnknown(m.CPUModel), float64(m.RAMBytes)/(1<<30), m.PostgreSQL, m.Go, r.LoadStart, r.LoadBefore, r.LoadAfter)
	var settings []string
	for _, s := range m.Settings {
		settings = append(settings, s[0]+" "+s[1])
	}
	p("- PostgreSQL settings (the cluster's own; the benchmark changes none): %s\n", strings.Join(settings, ", "))
	p("- dcbench built from %s\n", orUnknown(m.Build))
	p("- command: `%s`; total %s\n", command, secs(r.Finished.Sub(r.Started)))
	p("- data: %s\n", r.dataLine())
	p("\n")
	r.table(b)
	p("\n")

	p("- rule (five operands): tag 1 or tag 2 (ANY; %s and %s of the members), tier %s, RFM segment %s of the model computed above,"+
		" NOT the saved audience \"members with tag 5\" (%s members, saved with audience.Service.Create);"+
		" it selects %s members, and the SQL count and member ids matched the engine on every one of their %d runs\n",
		pct(TagShares[0]), pct(TagShares[1]), RuleTier, RuleSegment, commas(r.SavedAudienceSize), commas(int64(r.Size)),
		2*(o.SQLRuns+o.SQLWarmups))
	p("  - rule: `%s`\n", r.RuleJSON)
	e := r.Engine
	per := (o.Evaluations + o.SQLRuns - 1) / o.SQLRuns
	p("- the engine and SQL take turns so that both see the same machine: after %d warm-up evaluations and %d warm-up runs of each statement,"+
		" %d rounds of %d evaluations of the rule, %d of the rule without its saved audience, one SQL count and one SQL member list\n",
		o.Warmups, o.SQLWarmups, o.SQLRuns, per, per)
	p("- engine (audience.Service.Evaluate, in-process: the server side of previewAudience): %d evaluations: min %s, p50 %s, p99 %s, max %s, mean %s;"+
		" CPU per evaluation %s of this process and %s of PostgreSQL (the whole cluster: the rule's lookups, the saved audience's row, and any other work); machine busy %.2f cores\n",
		e.N, ms(e.Min), ms(e.P50), ms(e.P99), ms(e.Max), ms(e.Mean),
		perRun(r.EngineCPU.Self, e.N), perRun(r.EngineCPU.Postgres, e.N), r.EngineCPU.MachineCores)
	p("  - the same rule without its NOT saved audience operand: p50 %s, p99 %s\n", ms(r.EngineNoSaved.P50), ms(r.EngineNoSaved.P99))
	for _, s := range []struct {
		name string
		t    Timings
		c    CPU
	}{{"SQL count", r.SQLCount, r.SQLCountCPU}, {"SQL member ids", r.SQLIDs, r.SQLIDsCPU}} {
		p("- %s: %d runs: min %s, p50 %s, p99 %s, max %s, mean %s; PostgreSQL CPU per run %s (%.2f cores; all postgres processes alive at the end); machine busy %.2f cores\n",
			s.name, s.t.N, ms(s.t.Min), ms(s.t.P50), ms(s.t.P99), ms(s.t.Max), ms(s.t.Mean),
			perRun(s.c.Postgres, s.t.N), s.c.Cores(s.c.Postgres), s.c.MachineCores)
	}
	var builds []string
	for i, c := range r.Index.Builds {
		builds = append(builds, fmt.Sprintf("%d: %s (this process %.2f cores, PostgreSQL %.2f)", i+1, secs(c.Wall), c.Cores(c.Self), c.Cores(c.Postgres)))
	}
	p("- bitmap index rebuilds (audience.Index.Build: members, last purchases over the orders, tags, RFM results): %s; the built index holds %.1f MB of Go heap\n",
		strings.Join(builds, "; "), float64(r.Index.HeapBytes)/1e6)
	p("- RFM (analytics.ComputeRfm, window 365 days, split by the mean): compute %s (PostgreSQL %.2f cores, machine %.2f), recompute %s (PostgreSQL %.2f cores, machine %.2f); %s and %s members with a result\n",
		secs(r.Rfm.Compute.Wall), r.Rfm.Compute.Cores(r.Rfm.Compute.Postgres), r.Rfm.Compute.MachineCores,
		secs(r.Rfm.Recompute.Wall), r.Rfm.Recompute.Cores(r.Rfm.Recompute.Postgres), r.Rfm.Recompute.MachineCores,
		commas(r.Rfm.Members), commas(r.Rfm.RecomputedMembers))
	var segs []string
	for _, s := range r.Rfm.Segments {
		segs = append(segs, fmt.Sprintf("%s %s (%.1f %%)", s.Segment, commas(s.Members), 100*s.Share))
	}
	p("  - segments: %s\n", strings.Join(segs, ", "))
	r.dashboardLines(b)
	p("\nThe rule as SQL (count; the member ids select m.id … ORDER BY m.id):\n\n```sql\n%s\n```\n", r.CountSQL)
	p("\n<details><summary>EXPLAIN (ANALYZE, BUFFERS) of the count</summary>\n\n```\n%s\n```\n</details>\n\n", r.Plan)
	return b.Flush()
}

// WriteSummary writes the table and the figures behind it for the
// terminal.
func (r *Result) WriteSummary(w io.Writer, report string) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "\n")
	r.table(b)
	fmt.Fprintf(b, "\n- data: %s\n- load average %s at the start, %s before the measurements, %s at the end; %d CPUs\n",
		r.dataLine(), r.LoadStart, r.LoadBefore, r.LoadAfter, r.Machine.CPUs)
	fmt.Fprintf(b, "- the rule selects %s members; SQL and engine agreed on every run\n", commas(int64(r.Size)))
	fmt.Fprintf(b, "- dashboards: %d answers compared with SQL over the raw orders, all equal\n", r.Dashboards.Checks)
	if report != "" {
		fmt.Fprintf(b, "\nreport: %s (total %s)\n", report, secs(r.Finished.Sub(r.Started)))
	}
	return b.Flush()
}

func (r *Result) dataLine() string {
	ds := r.Dataset
	how := fmt.Sprintf("reused, generated %s in %s", ds.GeneratedAt.UTC().Format("2006-01-02 15:04 UTC"), secs(ds.GenerateTime))
	if ds.Generated {
		how = "generated by this run in " + secs(ds.GenerateTime)
	}
	shares := make([]string, len(TagShares))
	for i, s := range TagShares {
		shares[i] = pct(s)
	}
	return fmt.Sprintf("database %s (%s, %s, generator version %d): %s members (%s ACTIVE, %s with a paid membership; tiers none 40 %%, SILVER 30 %%, GOLD 20 %%, PLATINUM 10 %%), "+
		"%s orders over two years from %s members (%s REFUNDED) with %s lines over %d products, %s tag assignments over 5 tags (%s), 3 business units, %d stores",
		ds.Name, size(ds.SizeBytes), how, DataVersion, commas(int64(ds.Members)), commas(ds.ActiveMembers), commas(ds.PaidMembers),
		commas(int64(ds.Orders)), commas(ds.Buyers), commas(ds.RefundedOrders), commas(ds.OrderItems), products, commas(ds.TagAssignments),
		strings.Join(shares, " / "), 3*storesPerUnit)
}

func (r *Result) table(b *bufio.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	ds := r.Dataset
	p("| measurement | result | target | |\n|---|---:|---|---|\n")
	p("| previewAudience, engine p50 / p99 | %s / %s | p99 ≤ %s | %s |\n",
		ms(r.Engine.P50), ms(r.Engine.P99), ms(TargetEngineP99), verdict(r.Engine.P99 <= TargetEngineP99))
	p("| same rule in SQL, count, p50 / p99 | %s / %s | | |\n", ms(r.SQLCount.P50), ms(r.SQLCount.P99))
	p("| ratio SQL count / engine, p50 / p99 | %.0f× / %.0f× | ≥ %.0f× | %s |\n",
		r.RatioP50(), r.RatioP99(), TargetRatio, verdict(r.RatioP50() >= TargetRatio && r.RatioP99() >= TargetRatio))
	p("| same rule in SQL, member ids, p50 / p99 (ratio %.0f× / %.0f×) | %s / %s | | |\n",
		ratio(r.SQLIDs.P50, r.Engine.P50), ratio(r.SQLIDs.P99, r.Engine.P99), ms(r.SQLIDs.P50), ms(r.SQLIDs.P99))
	p("| bitmap index rebuild, %s members, slowest of %d | %s | ≤ %s | %s |\n",
		commas(int64(ds.Members)), len(r.Index.Builds), secs(r.Index.Worst()), secs(TargetIndexBuild), verdict(r.Index.Worst() <= TargetIndexBuild))
	p("| RFM compute / recompute, %s members, %s orders | %s / %s | ≤ %s | %s |\n",
		commas(int64(ds.Members)), commas(int64(ds.Orders)), secs(r.Rfm.Compute.Wall), secs(r.Rfm.Recompute.Wall),
		secs(TargetRfm), verdict(r.Rfm.Worst() <= TargetRfm))
	d := r.Dashboards
	p("| sales aggregates rebuild (dashboard.Rebuild), %s orders | %s | | |\n", commas(int64(ds.Orders)), secs(d.Rebuild.Wall))
	p("| SalesOverview, %d days, p50 / p99 | %s / %s | p99 ≤ %s | %s |\n",
		OverviewDays, ms(d.Overview.P50), ms(d.Overview.P99), ms(TargetOverviewP99), verdict(d.Overview.P99 <= TargetOverviewP99))
	p("| same overview in SQL over the raw orders, p50 / p99 (ratio %.0f× / %.0f×) | %s / %s | | |\n",
		d.RatioP50(), d.RatioP99(), ms(d.OverviewSQL.P50), ms(d.OverviewSQL.P99))
	p("| SalesOverview on a replica that has read no day yet, p50 / max | %s / %s | | |\n", ms(d.OverviewCold.P50), ms(d.OverviewCold.Max))
	p("| StoreMonthlyReport + TopProducts(%d), p50 / p99 | %s / %s | p99 ≤ %s | %s |\n",
		TopProducts, ms(d.StoreReport.P50), ms(d.StoreReport.P99), ms(TargetStoreReportP99), verdict(d.StoreReport.P99 <= TargetStoreReportP99))
	p("| MemberStats, p50 / p99 | %s / %s | | |\n", ms(d.MemberStats.P50), ms(d.MemberStats.P99))
	p("| ChannelStats, 30 / 90 days, p50 / p99 | %s / %s | | |\n", ms(d.ChannelStats.P50), ms(d.ChannelStats.P99))
	p("| prediction fit and scoring (FitAndScore), %s members with a purchase | %s | ≤ %s | %s |\n",
		commas(int64(d.FitSummary.Members)), secs(d.Fit.Wall), secs(TargetFit), verdict(d.Fit.Wall <= TargetFit))
}

// dashboardLines writes the details of the dashboards phase.
func (r *Result) dashboardLines(b *bufio.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	d := r.Dashboards
	p("- dashboards: orders paid %s to %s (business days); the aggregates rebuilt from every order in %s (this process %.2f cores, PostgreSQL %.2f, machine %.2f):"+
		" %s sales_daily rows, %s product_daily rows, %s store_member_months rows, %s members' first orders\n",
		d.FirstDay, d.LastDay, secs(d.Rebuild.Wall), d.Rebuild.Cores(d.Rebuild.Self), d.Rebuild.Cores(d.Rebuild.Postgres), d.Rebuild.MachineCores,
		commas(d.SalesDailyRows), commas(d.ProductDailyRows), commas(d.StoreMemberMonthRows), commas(d.FirstOrders))
	p("  - SalesOverview (dashboard.SalesOverview, in-process): %d windows of %d days ending up to 540 days before the last day, every third of one business unit:"+
		" min %s, p50 %s, p99 %s, max %s, mean %s; CPU per call %s of this process and %s of PostgreSQL\n",
		d.Overview.N, OverviewDays, ms(d.Overview.Min), ms(d.Overview.P50), ms(d.Overview.P99), ms(d.Overview.Max), ms(d.Overview.Mean),
		perRun(d.OverviewCPU.Self, d.Overview.N), perRun(d.OverviewCPU.Postgres, d.Overview.N))
	p("  - the same on a replica that has read none of the days yet (a new dashboard.Service each time: the %d days' sales_daily rows, buyer bitmaps included, come from PostgreSQL): %d runs: p50 %s, max %s\n",
		OverviewDays, d.OverviewCold.N, ms(d.OverviewCold.P50), ms(d.OverviewCold.Max))
	p("  - the same overview as one SQL statement over the raw orders (grouping sets: total, channel, business unit, day; the paid-member test per order),"+
		" taking turns with blocks of the above: %d runs: min %s, p50 %s, p99 %s, max %s; PostgreSQL CPU per run %s;"+
		" each answer equal to the aggregates' for its window\n",
		d.OverviewSQL.N, ms(d.OverviewSQL.Min), ms(d.OverviewSQL.P50), ms(d.OverviewSQL.P99), ms(d.OverviewSQL.Max),
		perRun(d.OverviewSQLCPU.Postgres, d.OverviewSQL.N))
	p("  - StoreMonthlyReport and TopProducts(%d) of the same store and month, over %d stores and the last 12 months: %d runs: min %s, p50 %s, p99 %s, max %s;"+
		" the first 3 equal to SQL over the raw orders and lines\n",
		TopProducts, 3*storesPerUnit, d.StoreReport.N, ms(d.StoreReport.Min), ms(d.StoreReport.P50), ms(d.StoreReport.P99), ms(d.StoreReport.Max))
	p("  - MemberStats (audience index): %d runs: p50 %s, p99 %s, max %s; totals and the gender and channel distributions equal to SQL\n",
		d.MemberStats.N, ms(d.MemberStats.P50), ms(d.MemberStats.P99), ms(d.MemberStats.Max))
	p("  - ChannelStats (buyer bitmaps of sales_daily and first_order_days, the index's channels): %d runs over 30- and 90-day windows: p50 %s, p99 %s, max %s;"+
		" 90 days to the last day equal to one SQL statement over the raw orders and members, which took %s\n",
		d.ChannelStats.N, ms(d.ChannelStats.P50), ms(d.ChannelStats.P99), ms(d.ChannelStats.Max), ms(d.ChannelSQL))
	f := d.FitSummary
	p("  - prediction.FitAndScore: %s (read %s, fit %s, write %s; this process %.2f cores, PostgreSQL %.2f): %s members scored, %s repeaters in the Gamma-Gamma fit\n",
		secs(d.Fit.Wall), secs(f.Read), secs(f.Fit), secs(f.Write), d.Fit.Cores(d.Fit.Self), d.Fit.Cores(d.Fit.Postgres),
		commas(int64(f.Members)), commas(int64(f.Repeaters)))
}

func pct(share float64) string { return strconv.Itoa(int(share*100+0.5)) + " %" }

// size formats bytes in MB or GB.
func size(b int64) string {
	if b < 1e9 {
		return strconv.FormatFloat(float64(b)/1e6, 'f', 0, 64) + " MB"
	}
	return strconv.FormatFloat(float64(b)/1e9, 'f', 1, 64) + " GB"
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// ms formats d in milliseconds, to three significant digits or more.
func ms(d time.Duration) string {
	v := float64(d) / 1e6
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
}

// secs formats d in seconds.
func secs(d time.Duration) string {
	v := d.Seconds()
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " s"
}

// perRun formats CPU seconds over n runs as µs or ms per run.
func perRun(cpu float64, n int) string {
	if n == 0 {
		return "-"
	}
	us := cpu / float64(n) * 1e6
	if us < 10_000 {
		return strconv.FormatFloat(us, 'f', 0, 64) + " µs"
	}
	return strconv.FormatFloat(us/1000, 'f', 1, 64) + " ms"
}

// commas writes n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
