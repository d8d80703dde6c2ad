package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
)

// Message is an SMS or e-mail a campaign sends to a member. The messenger
// finds the member's address (the phone and e-mail are encrypted
// personal data it is allowed to read).
type Message struct {
	Channel    enum.MessageChannel // SMS or EMAIL
	CampaignID int
	MemberID   int
	Title      string
	Body       string
}

// Messenger sends SMS and e-mail (a gateway in production). Send is
// called once per message, after the batch that decided it committed; an
// error is logged and not retried (at most once).
type Messenger interface {
	Send(ctx context.Context, m Message) error
}

// LogMessenger writes messages to the log instead of sending them
// (development).
type LogMessenger struct{ Log *slog.Logger }

var _ Messenger = LogMessenger{}

// Send logs m.
func (l LogMessenger) Send(ctx context.Context, m Message) error {
	l.Log.InfoContext(ctx, "campaign message (not sent: development messenger)", "channel", m.Channel,
		"campaign", m.CampaignID, "member", m.MemberID, "title", m.Title, "body", m.Body)
	return nil
}

// send hands the messages a committed batch decided to the messenger.
func (s *Service) send(ctx context.Context, out []Message) {
	for _, m := range out {
		if err := s.messenger.Send(ctx, m); err != nil {
			s.log.WarnContext(ctx, "campaign: sending a message", "channel", m.Channel, "campaign", m.CampaignID,
				"member", m.MemberID, "err", err)
		}
	}
}

// WebhookMessenger posts each message as JSON to URL, the group's SMS and
// e-mail gateway: {"channel", "to", "memberId", "campaignId", "title",
// "body"}. "to" is the member's phone for SMS (decrypted by Phone); the
// member has no e-mail address in OneMember, so for EMAIL it is empty and
// the gateway addresses the member by memberId from its own records.
type WebhookMessenger struct {
	URL   string
	Phone func(ctx context.Context, memberID int) (string, error)
	HTTP  *http.Client
}

var _ Messenger = WebhookMessenger{}

// Send implements Messenger.
func (w WebhookMessenger) Send(ctx context.Context, m Message) error {
	var to string
	if m.Channel == enum.MessageSMS {
		phone, err := w.Phone(ctx, m.MemberID)
		if err != nil {
			return fmt.Errorf("reading the member's phone: %w", err)
		}
		if phone == "" {
			return errors.New("the member has no phone")
		}
		to = phone
	}
	body, err := json.Marshal(map[string]any{"channel": m.Channel, "to": to, "memberId": m.MemberID,
		"campaignId": m.CampaignID, "title": m.Title, "body": m.Body})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("message request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := w.HTTP
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("sending message: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("message gateway answered HTTP %d", resp.StatusCode)
	}
	return nil
}
