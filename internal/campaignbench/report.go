package campaignbench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteReport writes the run as Markdown, with the command that started
// it.
func (r *Result) WriteReport(w io.Writer, command string) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "# Campaign benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(b, "Command: `%s`\n\n", command)
	fmt.Fprintf(b, "A ONE_OFF campaign issuing one coupon to each member of a saved audience of every member of `%s` "+
		"(%s members, %s ACTIVE: a campaign acts on ACTIVE members only), planned by the campaign runner and run by %d job "+
		"workers (what the server starts), %d members per transaction.\n\n",
		r.Database, commas(r.Members), commas(r.ActiveMembers), r.Workers, r.BatchSize)
	r.table(b)
	fmt.Fprintf(b, "\nVerification (SQL): %s\n", verdict(r.Verified))
	for _, p := range r.Problems {
		fmt.Fprintf(b, "- %s\n", p)
	}
	fmt.Fprintf(b, "\n## Machine\n\n- CPU: %s, %d cores\n- PostgreSQL %s", orUnknown(r.CPUModel), r.CPUs, r.Postgres)
	keys := make([]string, 0, len(r.Settings))
	for k := range r.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(b, ", %s=%s", k, r.Settings[k])
	}
	fmt.Fprintf(b, "\n- Deleting the earlier runs' rows took %s (not measured).\n", secs(r.Cleanup))
	return b.Flush()
}

// WriteSummary writes the table and where the report went.
func (r *Result) WriteSummary(w io.Writer, report string) error {
	b := bufio.NewWriter(w)
	r.table(b)
	fmt.Fprintf(b, "\nVerification: %s\n", verdict(r.Verified))
	for _, p := range r.Problems {
		fmt.Fprintf(b, "- %s\n", p)
	}
	if report != "" {
		fmt.Fprintf(b, "Report: %s\n", report)
	}
	return b.Flush()
}

func (r *Result) table(b *bufio.Writer) {
	met := "met"
	if r.Elapsed > Target {
		met = "MISSED"
	}
	fmt.Fprintf(b, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(b, "| time to finish (activation → job SUCCEEDED) | %s (target ≤ %s: %s) |\n", secs(r.Elapsed), secs(Target), met)
	fmt.Fprintf(b, "| members served per second | %s |\n", commas(int64(r.MembersPerSec+0.5)))
	fmt.Fprintf(b, "| activation → first batch committed (selection) | %s |\n", secs(r.Selection))
	fmt.Fprintf(b, "| executions / coupons | %s / %s |\n", commas(int64(r.Executions)), commas(int64(r.Coupons)))
	ratio := 0.0
	if r.Reference > 0 {
		ratio = r.Elapsed.Seconds() / r.Reference.Seconds()
	}
	fmt.Fprintf(b, "| reference: the same coupon rows by one INSERT … SELECT | %s (campaign %.1f× slower) |\n", secs(r.Reference), ratio)
}

func verdict(ok bool) string {
	if ok {
		return "passed: exactly one coupon per treated member, one execution per ACTIVE member, stock and events in step"
	}
	return "FAILED"
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func commas[T ~int | ~int64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// cpuModel is the processor's name from /proc/cpuinfo ("" elsewhere).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
