package dcbench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/onemember/onemember/internal/platform/procstat"
)

// Machine is what the report says about where it ran.
type Machine struct {
	CPUs       int // runtime.NumCPU: the CPUs this process may use, as nproc
	CPUModel   string
	RAMBytes   int64
	Go         string
	PostgreSQL string
	// Build is the commit the binary was built from, "" when unknown.
	Build string
	// Settings are the PostgreSQL settings that shape the SQL side, as
	// the cluster has them (the benchmark never changes them).
	Settings [][2]string
}

// machineFacts reads the machine's CPUs, memory, the toolchain and the
// PostgreSQL server's version and settings.
func machineFacts(ctx context.Context, db *sql.DB) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.RAMBytes = kb << 10
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			m.Build = "commit " + rev
			if modified == "true" {
				m.Build += " plus uncommitted changes"
			}
		}
	}
	if err := db.QueryRowContext(ctx, `SHOW server_version`).Scan(&m.PostgreSQL); err != nil {
		return m, fmt.Errorf("reading the server version: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT n, current_setting(n) FROM unnest($1::text[]) WITH ORDINALITY AS s(n, i) ORDER BY i`,
		"{shared_buffers,work_mem,effective_cache_size,random_page_cost,max_parallel_workers_per_gather,jit,synchronous_commit}")
	if err != nil {
		return m, fmt.Errorf("reading settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return m, err
		}
		m.Settings = append(m.Settings, [2]string{k, v})
	}
	return m, rows.Err()
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuSnap is the CPU time used so far (in ticks) by this process, by each
// process named postgres (by pid), and by the machine.
type cpuSnap struct {
	at      time.Time
	self    float64
	pg      map[string]float64
	machine procstat.Machine
}

// readCPU takes a snapshot now; unreadable values count as zero.
func readCPU() cpuSnap {
	return cpuSnap{
		at:      time.Now(),
		self:    procstat.ProcessTicks("self"),
		pg:      procstat.CommandTicks("postgres"),
		machine: procstat.ReadMachine(),
	}
}

// CPU is the processor time of one phase.
type CPU struct {
	Wall time.Duration
	// Self and Postgres are CPU seconds of this process and of the
	// postgres processes alive at the end of the phase (the whole cluster:
	// other work on it counts too; processes that ended during the phase,
	// such as short parallel workers, are missed).
	Self, Postgres float64
	// MachineCores is the machine's busy time over the phase, in cores.
	MachineCores float64
}

// since is the CPU used between before and now.
func since(before cpuSnap) CPU { return between(before, readCPU()) }

// between is the CPU used between two snapshots.
func between(before, now cpuSnap) CPU {
	c := CPU{Wall: now.at.Sub(before.at), Self: (now.self - before.self) / procstat.TicksPerSecond}
	for pid, t := range now.pg {
		// A pid seen before is the same process unless its time went back.
		if b, ok := before.pg[pid]; ok && b <= t {
			t -= b
		}
		c.Postgres += t / procstat.TicksPerSecond
	}
	if d := now.machine.Total - before.machine.Total; d > 0 {
		// Total counts every CPU: the busy share times the CPUs.
		c.MachineCores = (now.machine.Busy - before.machine.Busy) / d * float64(max(now.machine.CPUs, 1))
	}
	return c
}

// Cores is x CPU seconds over the phase's wall time.
func (c CPU) Cores(x float64) float64 {
	if c.Wall <= 0 {
		return 0
	}
	return x / c.Wall.Seconds()
}

// meter adds up the CPU of several phases.
type meter struct {
	c    CPU
	busy float64 // machine core-seconds
}

func (m *meter) add(c CPU) {
	m.c.Wall += c.Wall
	m.c.Self += c.Self
	m.c.Postgres += c.Postgres
	m.busy += c.MachineCores * c.Wall.Seconds()
}

func (m *meter) total() CPU {
	c := m.c
	if c.Wall > 0 {
		c.MachineCores = m.busy / c.Wall.Seconds()
	}
	return c
}
