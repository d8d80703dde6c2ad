package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/onemember/onemember/internal/pii"
)

// SMSSender delivers one-time codes. Production plugs in an SMS provider.
type SMSSender interface {
	SendOTP(ctx context.Context, phone, code, purpose string) error
}

// LogSender writes codes to the log instead of sending them: development
// only. The line carries the masked phone and the code as attribute "otp".
type LogSender struct{ Log *slog.Logger }

// SendOTP implements SMSSender.
func (s LogSender) SendOTP(ctx context.Context, phone, code, purpose string) error {
	s.Log.InfoContext(ctx, "otp sent", "phone", pii.MaskPhone(phone), "purpose", purpose, "otp", code)
	return nil
}

// WebhookSender posts {"phone","code","purpose"} as JSON to an SMS
// gateway: the seam for whichever SMS provider the group contracts.
type WebhookSender struct {
	URL  string
	HTTP *http.Client
}

// SendOTP implements SMSSender.
func (s WebhookSender) SendOTP(ctx context.Context, phone, code, purpose string) error {
	body, _ := json.Marshal(map[string]string{"phone": phone, "code": code, "purpose": purpose})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sms request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := s.HTTP
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("sending sms: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("sms gateway answered HTTP %d", resp.StatusCode)
	}
	return nil
}
