// Package procstat reads CPU time from Linux /proc for benchmark reports:
// the time used by one process, by every process running a command, and by
// the whole machine. It never fails: what it cannot read counts as zero,
// because a report with a missing CPU figure beats no report. FreeMemory
// prepares a process's memory to be measured.
package procstat

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// TicksPerSecond is USER_HZ, the unit of /proc CPU times: 100 on every
// Linux architecture Go supports (sysconf is out of reach without cgo).
const TicksPerSecond = 100

// ProcessTicks is the CPU time (utime+stime, in ticks) that process pid
// has used so far; pid may be "self". It is 0 when unreadable.
func ProcessTicks(pid string) float64 {
	raw, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return u + st
}

// CommandTicks is the CPU time (in ticks) of every process whose command
// name (/proc/<pid>/comm) is comm, by pid. Callers that compare two
// readings need the pids: a process may end or start in between.
func CommandTicks(comm string) map[string]float64 {
	ticks := map[string]float64{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		name, err := os.ReadFile(filepath.Join(d, "comm"))
		if err == nil && string(bytes.TrimSpace(name)) == comm {
			pid := filepath.Base(d)
			ticks[pid] = ProcessTicks(pid)
		}
	}
	return ticks
}

// Machine is the CPU time the whole machine has used so far, from
// /proc/stat.
type Machine struct {
	// Busy and Total are ticks summed over every CPU; Busy leaves out
	// idle and iowait.
	Busy, Total float64
	// CPUs is the number of cpuN lines, 0 when unreadable.
	CPUs int
}

// ReadMachine reads /proc/stat; a zero Machine means it was unreadable.
func ReadMachine() Machine {
	var m Machine
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	for l := range strings.Lines(string(raw)) {
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			m.CPUs++
		}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) > 1 {
		for i, v := range f[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			m.Total += n
			if i != 3 && i != 4 { // idle, iowait
				m.Busy += n
			}
		}
	}
	return m
}

// FreeMemory is an HTTP handler that collects garbage and returns every
// free page to the OS (debug.FreeOSMemory), so that a benchmark reading
// the process's RSS next sees what the process holds, not what its last
// burst of work left behind. Development only: mount it nowhere else.
func FreeMemory(w http.ResponseWriter, _ *http.Request) {
	debug.FreeOSMemory()
	w.WriteHeader(http.StatusNoContent)
}
