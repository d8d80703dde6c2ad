package obs

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestLogLinesCarryTheRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "json", "info")
	ctx := WithRequestID(context.Background(), "req-123")
	log.With("component", "test").InfoContext(ctx, "hello")
	if !strings.Contains(buf.String(), `"request_id":"req-123"`) {
		t.Fatalf("log line lacks request id: %s", buf.String())
	}
}

func TestOperationLabelsAreBounded(t *testing.T) {
	m := NewMetrics(nil, nil)
	if got := m.OperationLabel("MemberHome"); got != "MemberHome" {
		t.Fatal(got)
	}
	if got := m.OperationLabel("bad name; DROP"); got != "other" {
		t.Fatal(got)
	}
	for i := 0; i < maxOperationLabels+10; i++ {
		m.OperationLabel("Op" + strings.Repeat("x", i%60) + string(rune('A'+i%26)) + string(rune('a'+i/26%26)))
	}
	if got := m.OperationLabel("BrandNewOperation"); got != "other" {
		t.Fatalf("label cardinality not capped: %s", got)
	}
}
