package realtimebench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports (sysconf is out of reach without cgo).
const clockTicks = 100

// cpuSnap is CPU time used so far, in ticks, and when it was read.
type cpuSnap struct {
	at                       time.Time
	server, self, pg         float64
	machineBusy, machineTime float64
}

// readCPU reads the CPU time of process server (0: none), of this process,
// of every process named postgres, and of the machine (busy and total,
// over all CPUs) from /proc. Unreadable values count as zero.
func readCPU(server int) cpuSnap {
	s := cpuSnap{at: time.Now(), self: procTicks("self")}
	if server > 0 {
		s.server = procTicks(strconv.Itoa(server))
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err == nil && string(bytes.TrimSpace(comm)) == "postgres" {
			s.pg += procTicks(filepath.Base(d))
		}
	}
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(raw), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			s.machineTime += n
			if i != 3 && i != 4 { // idle, iowait
				s.machineBusy += n
			}
		}
	}
	return s
}

// procTicks is utime+stime of /proc/<pid>/stat.
func procTicks(pid string) float64 {
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

// cores returns the cores the server, this process, PostgreSQL and the
// machine used between before and s.
func (s cpuSnap) cores(before cpuSnap) (server, self, pg, machine float64) {
	wall := s.at.Sub(before.at).Seconds() * clockTicks
	if wall <= 0 {
		return
	}
	round := func(x float64) float64 { return float64(int(x/wall*100+0.5)) / 100 }
	machine = 0
	if d := s.machineTime - before.machineTime; d > 0 {
		// machineTime counts every CPU: busy share × CPUs.
		machine = float64(int((s.machineBusy-before.machineBusy)/d*float64(numCPU())*100+0.5)) / 100
	}
	return round(s.server - before.server), round(s.self - before.self), round(s.pg - before.pg), machine
}

func numCPU() int {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
