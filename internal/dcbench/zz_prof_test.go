package dcbench_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"

	"github.com/onemember/onemember/internal/dcbench"
	"github.com/onemember/onemember/internal/platform/pgtest"
)

func TestZZProfPrepare(t *testing.T) {
	if os.Getenv("ZZPROF") == "" {
		t.Skip()
	}
	m, _ := strconv.Atoi(os.Getenv("ZZM"))
	o, _ := strconv.Atoi(os.Getenv("ZZO"))
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	_, err := dcbench.Prepare(context.Background(), dcbench.PrepareOptions{Log: log, AdminURL: pgtest.AdminDSN(t), Database: os.Getenv("ZZPROF"), Scale: dcbench.Scale{Members: m, Orders: o}})
	if err != nil {
		t.Fatal(err)
	}
}
