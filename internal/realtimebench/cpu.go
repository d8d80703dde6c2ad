package realtimebench

import (
	"strconv"
	"time"

	"github.com/onemember/onemember/internal/platform/procstat"
)

// cpuSnap is CPU time used so far, in ticks, and when it was read.
type cpuSnap struct {
	at               time.Time
	server, self, pg float64
	machine          procstat.Machine
}

// readCPU reads the CPU time of process server (0: none), of this process,
// of every process named postgres, and of the machine (busy and total,
// over all CPUs) from /proc. Unreadable values count as zero.
func readCPU(server int) cpuSnap {
	s := cpuSnap{at: time.Now(), self: procstat.ProcessTicks("self")}
	if server > 0 {
		s.server = procstat.ProcessTicks(strconv.Itoa(server))
	}
	for _, t := range procstat.CommandTicks("postgres") {
		s.pg += t
	}
	s.machine = procstat.ReadMachine()
	return s
}

// cores returns the cores the server, this process, PostgreSQL and the
// machine used between before and s.
func (s cpuSnap) cores(before cpuSnap) (server, self, pg, machine float64) {
	wall := s.at.Sub(before.at).Seconds() * procstat.TicksPerSecond
	if wall <= 0 {
		return
	}
	round := func(x float64) float64 { return float64(int(x/wall*100+0.5)) / 100 }
	machine = 0
	if d := s.machine.Total - before.machine.Total; d > 0 {
		// Total counts every CPU: busy share × CPUs.
		machine = float64(int((s.machine.Busy-before.machine.Busy)/d*float64(max(s.machine.CPUs, 1))*100+0.5)) / 100
	}
	return round(s.server - before.server), round(s.self - before.self), round(s.pg - before.pg), machine
}
