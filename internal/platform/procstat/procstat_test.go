package procstat_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/procstat"
)

// burn spins for d so that this process has CPU time to show.
func burn(d time.Duration) int {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		n++
	}
	return n
}

func TestProcessTicks(t *testing.T) {
	burn(200 * time.Millisecond)
	pid := strconv.Itoa(os.Getpid())
	if got := procstat.ProcessTicks(pid); got <= 0 {
		t.Fatalf("ProcessTicks(%s) = %v after burning CPU, want > 0", pid, got)
	}
	if got := procstat.ProcessTicks("self"); got <= 0 {
		t.Fatalf(`ProcessTicks("self") = %v, want > 0`, got)
	}
	if got := procstat.ProcessTicks("0"); got != 0 {
		t.Fatalf(`ProcessTicks("0") = %v, want 0 for a missing process`, got)
	}
}

func TestCommandTicks(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	burn(100 * time.Millisecond)
	comm := strings.TrimSpace(string(raw))
	pid := strconv.Itoa(os.Getpid())
	got := procstat.CommandTicks(comm)
	if got[pid] <= 0 {
		t.Fatalf("CommandTicks(%q)[%s] = %v (all: %v), want > 0", comm, pid, got[pid], got)
	}
	if got := procstat.CommandTicks("no such command here"); len(got) != 0 {
		t.Fatalf("CommandTicks of an unknown command = %v, want none", got)
	}
}

func TestReadMachine(t *testing.T) {
	m := procstat.ReadMachine()
	if m.CPUs < 1 {
		t.Fatalf("CPUs = %d, want >= 1", m.CPUs)
	}
	if m.Total <= 0 || m.Busy <= 0 || m.Busy > m.Total {
		t.Fatalf("Busy = %v, Total = %v, want 0 < Busy <= Total", m.Busy, m.Total)
	}
	burn(50 * time.Millisecond)
	if n := procstat.ReadMachine(); n.Total < m.Total || n.Busy < m.Busy {
		t.Fatalf("machine time went back: %+v then %+v", m, n)
	}
}
