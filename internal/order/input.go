package order

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits bound what one order may carry.
type Limits struct {
	MaxAmount int64 // fen
	MaxItems  int
}

// Item is one line of an ingested order.
type Item struct {
	SKU, Name, Category, Brand string
	Quantity                   int
	UnitPrice, Amount          int64
}

// Payment is one tender of an ingested order.
type Payment struct {
	Method enum.PaymentMethod
	Amount int64
	// Points burned, with POINTS: 100 points per yuan, so equal to Amount.
	Points int64
	// StoredValueEntryID is the payWithStoredValue transaction, with STORED_VALUE.
	StoredValueEntryID *int
}

// IngestInput is a completed sale.
type IngestInput struct {
	ExternalID     string
	Channel        enum.Channel
	StoreCode      string
	Member         identity.MemberRef
	PaidAt         time.Time
	Amount         int64
	Items          []Item
	Payments       []Payment
	CouponOrderRef string
	CampaignID     *int
}

// Validate reports every problem at once, naming the fields.
func (in IngestInput) Validate(lim Limits, now time.Time) error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fault.Invalidf(field, format, args...)) }
	if strings.TrimSpace(in.ExternalID) == "" {
		bad("externalId", "is required")
	}
	if !enum.Valid(in.Channel) {
		bad("channel", "is not a channel")
	}
	if strings.TrimSpace(in.StoreCode) == "" {
		bad("storeCode", "is required")
	}
	if err := in.Member.Validate("member"); err != nil {
		errs = append(errs, err)
	}
	if in.PaidAt.IsZero() || in.PaidAt.After(now.Add(5*time.Minute)) {
		bad("paidAt", "must be a time not in the future")
	}
	switch {
	case in.Amount <= 0:
		bad("amount", "must be positive")
	case in.Amount > lim.MaxAmount:
		bad("amount", "exceeds the limit of %d fen", lim.MaxAmount)
	}
	if len(in.Items) == 0 || len(in.Items) > lim.MaxItems {
		bad("items", "must have 1 to %d lines", lim.MaxItems)
	}
	var itemSum int64
	for i, it := range in.Items {
		f := fmt.Sprintf("items[%d]", i)
		if strings.TrimSpace(it.SKU) == "" {
			bad(f+".sku", "is required")
		}
		if it.Quantity <= 0 {
			bad(f+".quantity", "must be positive")
		}
		if it.UnitPrice < 0 || it.Amount < 0 {
			bad(f+".amount", "must not be negative")
		}
		itemSum += it.Amount
	}
	// Order-level coupon discounts (couponOrderRef) make the paid amount
	// smaller than the lines; without them the lines must add up exactly.
	if len(in.Items) > 0 && in.Amount > 0 {
		if in.CouponOrderRef == "" && itemSum != in.Amount {
			bad("items", "amounts add up to %d, not the order amount %d", itemSum, in.Amount)
		}
		if in.CouponOrderRef != "" && itemSum < in.Amount {
			bad("items", "amounts add up to %d, less than the order amount %d", itemSum, in.Amount)
		}
	}
	var paid int64
	for i, p := range in.Payments {
		f := fmt.Sprintf("payments[%d]", i)
		if p.Amount <= 0 {
			bad(f+".amount", "must be positive")
		}
		switch p.Method {
		case enum.PayPoints:
			if p.Points != p.Amount {
				bad(f+".points", "must be %d: 100 points pay 1 yuan", p.Amount)
			}
		case enum.PayStoredValue:
			if p.StoredValueEntryID == nil {
				bad(f+".storedValueTransactionId", "is required with STORED_VALUE")
			}
		}
		paid += p.Amount
	}
	if len(in.Payments) == 0 {
		bad("payments", "at least one payment is required")
	} else if in.Amount > 0 && paid != in.Amount {
		bad("payments", "add up to %d, not the order amount %d", paid, in.Amount)
	}
	return errors.Join(errs...)
}

// RefundInput is a partial or full refund.
type RefundInput struct {
	ExternalID string
	Channel    enum.Channel
	RefundID   string
	Amount     int64
	Reason     string
}

// Validate reports every problem at once.
func (in RefundInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.ExternalID) == "" {
		errs = append(errs, fault.Invalidf("externalId", "is required"))
	}
	if strings.TrimSpace(in.RefundID) == "" {
		errs = append(errs, fault.Invalidf("refundId", "is required"))
	}
	if in.Amount <= 0 {
		errs = append(errs, fault.Invalidf("amount", "must be positive"))
	}
	return errors.Join(errs...)
}
