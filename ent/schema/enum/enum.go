// Package enum holds the closed value sets shared by the data model and the
// GraphQL API. Each type is stored as a string column (ent GoType enums) and
// marshals to the GraphQL enum of the same name, so one Go type serves every
// entity that uses it.
package enum

import (
	"fmt"
	"io"
	"slices"
	"strconv"
)

// value is implemented by every enum type of this package.
type value interface {
	~string
	Values() []string
}

func unmarshal[T value](v any, dst *T) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("enum %T must be a string", *dst)
	}
	if !slices.Contains((*dst).Values(), s) {
		return fmt.Errorf("%q is not a valid %T", s, *dst)
	}
	*dst = T(s)
	return nil
}

func marshal(w io.Writer, s string) { _, _ = io.WriteString(w, strconv.Quote(s)) }

// Valid reports whether v is one of its type's values.
func Valid[T value](v T) bool { return slices.Contains(v.Values(), string(v)) }

// Channel is where a member registered or an order was placed.
type Channel string

const (
	ChannelPOS             Channel = "POS"
	ChannelMiniProgram     Channel = "MINI_PROGRAM"
	ChannelApp             Channel = "APP"
	ChannelEcommerce       Channel = "ECOMMERCE"
	ChannelOfficialAccount Channel = "OFFICIAL_ACCOUNT"
)

func (Channel) Values() []string {
	return []string{"POS", "MINI_PROGRAM", "APP", "ECOMMERCE", "OFFICIAL_ACCOUNT"}
}
func (e Channel) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *Channel) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// Gender of a member as they state it.
type Gender string

const (
	GenderMale    Gender = "MALE"
	GenderFemale  Gender = "FEMALE"
	GenderUnknown Gender = "UNKNOWN"
)

func (Gender) Values() []string            { return []string{"MALE", "FEMALE", "UNKNOWN"} }
func (e Gender) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *Gender) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// StaffRole grants a staff account its permissions.
type StaffRole string

const (
	RoleAdmin      StaffRole = "ADMIN"
	RoleOperator   StaffRole = "OPERATOR"
	RoleAnalyst    StaffRole = "ANALYST"
	RoleStoreClerk StaffRole = "STORE_CLERK"
)

func (StaffRole) Values() []string            { return []string{"ADMIN", "OPERATOR", "ANALYST", "STORE_CLERK"} }
func (e StaffRole) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *StaffRole) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// APIScope limits what an integration (till, e-commerce back end) may do.
type APIScope string

const (
	ScopeOrdersWrite      APIScope = "ORDERS_WRITE"
	ScopeCouponsRedeem    APIScope = "COUPONS_REDEEM"
	ScopeMembersRead      APIScope = "MEMBERS_READ"
	ScopeEventsWrite      APIScope = "EVENTS_WRITE"
	ScopeStoredValueWrite APIScope = "STORED_VALUE_WRITE"
)

func (APIScope) Values() []string {
	return []string{"ORDERS_WRITE", "COUPONS_REDEEM", "MEMBERS_READ", "EVENTS_WRITE", "STORED_VALUE_WRITE"}
}
func (e APIScope) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *APIScope) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// BenefitKind classifies a benefit (权益).
type BenefitKind string

func (BenefitKind) Values() []string {
	return []string{"DISCOUNT", "BIRTHDAY_GIFT", "FREE_SHIPPING", "PRIORITY_CHECKOUT", "EXCLUSIVE_PRODUCTS",
		"FAST_RETURNS", "EVENT_ACCESS", "PERSONAL_SHOPPER", "POINTS_MULTIPLIER"}
}
func (e BenefitKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *BenefitKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// PaymentMethod is how part of an order was paid.
type PaymentMethod string

const (
	PayCash        PaymentMethod = "CASH"
	PayWeChat      PaymentMethod = "WECHAT_PAY"
	PayAlipay      PaymentMethod = "ALIPAY"
	PayBankCard    PaymentMethod = "BANK_CARD"
	PayStoredValue PaymentMethod = "STORED_VALUE"
	PayPoints      PaymentMethod = "POINTS"
)

func (PaymentMethod) Values() []string {
	return []string{"CASH", "WECHAT_PAY", "ALIPAY", "BANK_CARD", "STORED_VALUE", "POINTS"}
}
func (e PaymentMethod) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *PaymentMethod) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// PlanPeriod is the length of a paid membership period.
type PlanPeriod string

func (PlanPeriod) Values() []string            { return []string{"MONTH", "QUARTER", "YEAR"} }
func (e PlanPeriod) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *PlanPeriod) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// ConsentKind is what a member agreed to (PIPL).
type ConsentKind string

func (ConsentKind) Values() []string {
	return []string{"PRIVACY_POLICY", "MARKETING_SMS", "MARKETING_WECHAT", "MARKETING_EMAIL"}
}
func (e ConsentKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *ConsentKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CouponStatus is where a coupon is in its life.
type CouponStatus string

const (
	CouponAvailable CouponStatus = "AVAILABLE"
	CouponLocked    CouponStatus = "LOCKED"
	CouponRedeemed  CouponStatus = "REDEEMED"
	CouponExpired   CouponStatus = "EXPIRED"
	CouponVoid      CouponStatus = "VOID"
)

func (CouponStatus) Values() []string {
	return []string{"AVAILABLE", "LOCKED", "REDEEMED", "EXPIRED", "VOID"}
}
func (e CouponStatus) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CouponStatus) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CouponKind is how a coupon discounts.
type CouponKind string

func (CouponKind) Values() []string {
	return []string{"FIXED_AMOUNT", "PERCENT_OFF", "THRESHOLD", "GIFT"}
}
func (e CouponKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CouponKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// LotteryPrizeKind is what a lottery prize gives.
type LotteryPrizeKind string

const (
	PrizeCoupon   LotteryPrizeKind = "COUPON"
	PrizePoints   LotteryPrizeKind = "POINTS"
	PrizePhysical LotteryPrizeKind = "PHYSICAL"
	PrizeNothing  LotteryPrizeKind = "NOTHING"
)

func (LotteryPrizeKind) Values() []string            { return []string{"COUPON", "POINTS", "PHYSICAL", "NOTHING"} }
func (e LotteryPrizeKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *LotteryPrizeKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// RegistrationStatus is where an activity registration stands. A member
// who registers gets REGISTERED while there is capacity, WAITLISTED after;
// CHECKED_IN once the ticket is scanned at the door.
type RegistrationStatus string

const (
	RegistrationRegistered RegistrationStatus = "REGISTERED"
	RegistrationWaitlisted RegistrationStatus = "WAITLISTED"
	RegistrationCancelled  RegistrationStatus = "CANCELLED"
	RegistrationCheckedIn  RegistrationStatus = "CHECKED_IN"
)

func (RegistrationStatus) Values() []string {
	return []string{"REGISTERED", "WAITLISTED", "CANCELLED", "CHECKED_IN"}
}
func (e RegistrationStatus) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *RegistrationStatus) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// PushChannel is an outside channel member events are pushed through.
type PushChannel string

const (
	PushWeChatSubscribe PushChannel = "WECHAT_SUBSCRIBE"
	PushApp             PushChannel = "APP_PUSH"
)

func (PushChannel) Values() []string            { return []string{"WECHAT_SUBSCRIBE", "APP_PUSH"} }
func (e PushChannel) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *PushChannel) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// BehaviorKind is what a member did (行为): tracked by clients, ingested
// from integrations or recorded by the server itself.
type BehaviorKind string

const (
	BehaviorView        BehaviorKind = "VIEW"
	BehaviorClick       BehaviorKind = "CLICK"
	BehaviorWatch       BehaviorKind = "WATCH"
	BehaviorFavorite    BehaviorKind = "FAVORITE"
	BehaviorAddToCart   BehaviorKind = "ADD_TO_CART"
	BehaviorInteract    BehaviorKind = "INTERACT"
	BehaviorClaimCoupon BehaviorKind = "CLAIM_COUPON"
	BehaviorShare       BehaviorKind = "SHARE"
	BehaviorPurchase    BehaviorKind = "PURCHASE"
	BehaviorRepurchase  BehaviorKind = "REPURCHASE"
	BehaviorCheckIn     BehaviorKind = "CHECK_IN"
	BehaviorRegister    BehaviorKind = "REGISTER"
	BehaviorReview      BehaviorKind = "REVIEW"
)

func (BehaviorKind) Values() []string {
	return []string{"VIEW", "CLICK", "WATCH", "FAVORITE", "ADD_TO_CART", "INTERACT", "CLAIM_COUPON", "SHARE",
		"PURCHASE", "REPURCHASE", "CHECK_IN", "REGISTER", "REVIEW"}
}
func (e BehaviorKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *BehaviorKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// RfmSegment is one of the eight RFM segments (DOMAIN.md, Data centre).
type RfmSegment string

const (
	RfmImportantValue   RfmSegment = "IMPORTANT_VALUE"
	RfmImportantKeep    RfmSegment = "IMPORTANT_KEEP"
	RfmImportantDevelop RfmSegment = "IMPORTANT_DEVELOP"
	RfmImportantRetain  RfmSegment = "IMPORTANT_RETAIN"
	RfmGeneralValue     RfmSegment = "GENERAL_VALUE"
	RfmGeneralKeep      RfmSegment = "GENERAL_KEEP"
	RfmGeneralDevelop   RfmSegment = "GENERAL_DEVELOP"
	RfmGeneralRetain    RfmSegment = "GENERAL_RETAIN"
)

func (RfmSegment) Values() []string {
	return []string{"IMPORTANT_VALUE", "IMPORTANT_KEEP", "IMPORTANT_DEVELOP", "IMPORTANT_RETAIN",
		"GENERAL_VALUE", "GENERAL_KEEP", "GENERAL_DEVELOP", "GENERAL_RETAIN"}
}
func (e RfmSegment) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *RfmSegment) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// RfmSplitMode is how each of R, F and M is split into high and low.
type RfmSplitMode string

const (
	RfmSplitMean   RfmSplitMode = "MEAN"
	RfmSplitMedian RfmSplitMode = "MEDIAN"
	RfmSplitCustom RfmSplitMode = "CUSTOM"
)

func (RfmSplitMode) Values() []string            { return []string{"MEAN", "MEDIAN", "CUSTOM"} }
func (e RfmSplitMode) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *RfmSplitMode) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// AiplStage is a member's stage in the AIPL funnel; NONE below awareness.
type AiplStage string

const (
	AiplNone      AiplStage = "NONE"
	AiplAwareness AiplStage = "AWARENESS"
	AiplInterest  AiplStage = "INTEREST"
	AiplPurchase  AiplStage = "PURCHASE"
	AiplLoyalty   AiplStage = "LOYALTY"
)

func (AiplStage) Values() []string {
	return []string{"NONE", "AWARENESS", "INTEREST", "PURCHASE", "LOYALTY"}
}
func (e AiplStage) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *AiplStage) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// LifecycleStage is where a member stands by registration and purchases.
type LifecycleStage string

const (
	LifecycleNew      LifecycleStage = "NEW"
	LifecycleActive   LifecycleStage = "ACTIVE"
	LifecycleSleeping LifecycleStage = "SLEEPING"
	LifecycleChurned  LifecycleStage = "CHURNED"
	LifecycleProspect LifecycleStage = "PROSPECT"
)

func (LifecycleStage) Values() []string {
	return []string{"NEW", "ACTIVE", "SLEEPING", "CHURNED", "PROSPECT"}
}
func (e LifecycleStage) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *LifecycleStage) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// TagMatch says whether a member needs any or all of a rule's tags.
type TagMatch string

const (
	TagMatchAny TagMatch = "ANY"
	TagMatchAll TagMatch = "ALL"
)

func (TagMatch) Values() []string            { return []string{"ANY", "ALL"} }
func (e TagMatch) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *TagMatch) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// AttributeField is a member attribute an audience rule can test.
type AttributeField string

const (
	AttrGender       AttributeField = "GENDER"
	AttrAge          AttributeField = "AGE"
	AttrRegion       AttributeField = "REGION"
	AttrTier         AttributeField = "TIER"
	AttrChannel      AttributeField = "CHANNEL"
	AttrBusinessUnit AttributeField = "BUSINESS_UNIT"
	AttrRegisteredAt AttributeField = "REGISTERED_AT"
	AttrBirthMonth   AttributeField = "BIRTH_MONTH"
	AttrLifecycle    AttributeField = "LIFECYCLE"
)

func (AttributeField) Values() []string {
	return []string{"GENDER", "AGE", "REGION", "TIER", "CHANNEL", "BUSINESS_UNIT", "REGISTERED_AT", "BIRTH_MONTH", "LIFECYCLE"}
}
func (e AttributeField) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *AttributeField) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// RuleOp compares an attribute with a rule's values.
type RuleOp string

const (
	OpEq      RuleOp = "EQ"
	OpIn      RuleOp = "IN"
	OpBetween RuleOp = "BETWEEN"
	OpGte     RuleOp = "GTE"
	OpLte     RuleOp = "LTE"
)

func (RuleOp) Values() []string            { return []string{"EQ", "IN", "BETWEEN", "GTE", "LTE"} }
func (e RuleOp) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *RuleOp) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// AudienceRefresh is when a saved audience is recomputed: never (STATIC),
// every night (DAILY) or whenever members change (ON_CHANGE).
type AudienceRefresh string

const (
	RefreshStatic   AudienceRefresh = "STATIC"
	RefreshDaily    AudienceRefresh = "DAILY"
	RefreshOnChange AudienceRefresh = "ON_CHANGE"
)

func (AudienceRefresh) Values() []string            { return []string{"STATIC", "DAILY", "ON_CHANGE"} }
func (e AudienceRefresh) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *AudienceRefresh) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// JobKind is what a background job does.
type JobKind string

const (
	JobIssueCoupons    JobKind = "ISSUE_COUPONS"
	JobRefreshAudience JobKind = "REFRESH_AUDIENCE"
	JobComputeRfm      JobKind = "COMPUTE_RFM"
	JobRefreshTag      JobKind = "REFRESH_TAG"
	JobRunCampaign     JobKind = "RUN_CAMPAIGN"
)

func (JobKind) Values() []string {
	return []string{"ISSUE_COUPONS", "REFRESH_AUDIENCE", "COMPUTE_RFM", "REFRESH_TAG", "RUN_CAMPAIGN"}
}
func (e JobKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *JobKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// JobStatus is where a background job stands.
type JobStatus string

const (
	JobQueued    JobStatus = "QUEUED"
	JobRunning   JobStatus = "RUNNING"
	JobSucceeded JobStatus = "SUCCEEDED"
	JobFailed    JobStatus = "FAILED"
)

func (JobStatus) Values() []string            { return []string{"QUEUED", "RUNNING", "SUCCEEDED", "FAILED"} }
func (e JobStatus) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *JobStatus) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CampaignStatus is where a campaign stands: DRAFT → ACTIVE ⇄ PAUSED → ENDED.
type CampaignStatus string

const (
	CampaignDraft  CampaignStatus = "DRAFT"
	CampaignActive CampaignStatus = "ACTIVE"
	CampaignPaused CampaignStatus = "PAUSED"
	CampaignEnded  CampaignStatus = "ENDED"
)

func (CampaignStatus) Values() []string            { return []string{"DRAFT", "ACTIVE", "PAUSED", "ENDED"} }
func (e CampaignStatus) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CampaignStatus) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CampaignTriggerKind is what starts a campaign's actions for a member.
type CampaignTriggerKind string

const (
	TriggerOneOff         CampaignTriggerKind = "ONE_OFF"
	TriggerScheduled      CampaignTriggerKind = "SCHEDULED"
	TriggerRegistration   CampaignTriggerKind = "REGISTRATION"
	TriggerBirthday       CampaignTriggerKind = "BIRTHDAY"
	TriggerFirstPurchase  CampaignTriggerKind = "FIRST_PURCHASE"
	TriggerPurchase       CampaignTriggerKind = "PURCHASE"
	TriggerInactivity     CampaignTriggerKind = "INACTIVITY"
	TriggerTierChanged    CampaignTriggerKind = "TIER_CHANGED"
	TriggerHoliday        CampaignTriggerKind = "HOLIDAY"
	TriggerChurnRisk      CampaignTriggerKind = "CHURN_RISK"
	TriggerPointsExpiring CampaignTriggerKind = "POINTS_EXPIRING"
)

func (CampaignTriggerKind) Values() []string {
	return []string{"ONE_OFF", "SCHEDULED", "REGISTRATION", "BIRTHDAY", "FIRST_PURCHASE", "PURCHASE",
		"INACTIVITY", "TIER_CHANGED", "HOLIDAY", "CHURN_RISK", "POINTS_EXPIRING"}
}
func (e CampaignTriggerKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CampaignTriggerKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CampaignActionKind is what a campaign does to a member it reaches.
type CampaignActionKind string

const (
	ActionIssueCoupon CampaignActionKind = "ISSUE_COUPON"
	ActionAwardPoints CampaignActionKind = "AWARD_POINTS"
	ActionSendMessage CampaignActionKind = "SEND_MESSAGE"
)

func (CampaignActionKind) Values() []string {
	return []string{"ISSUE_COUPON", "AWARD_POINTS", "SEND_MESSAGE"}
}
func (e CampaignActionKind) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CampaignActionKind) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// MessageChannel is how a SEND_MESSAGE action reaches a member.
type MessageChannel string

const (
	MessageInApp           MessageChannel = "IN_APP"
	MessageWechatSubscribe MessageChannel = "WECHAT_SUBSCRIBE"
	MessageSMS             MessageChannel = "SMS"
	MessageEmail           MessageChannel = "EMAIL"
	MessageAppPush         MessageChannel = "APP_PUSH"
)

func (MessageChannel) Values() []string {
	return []string{"IN_APP", "WECHAT_SUBSCRIBE", "SMS", "EMAIL", "APP_PUSH"}
}
func (e MessageChannel) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *MessageChannel) UnmarshalGQL(v any) error { return unmarshal(v, e) }

// CampaignExecutionStatus is what became of one (campaign, member,
// occurrence): REACHED (the actions ran), HOLDOUT (held out to measure
// lift, untouched), or suppressed by consent, by a cap (maxPerMember,
// frequencyCapDays), by a higher-priority campaign, or by the budget.
type CampaignExecutionStatus string

const (
	ExecutionReached            CampaignExecutionStatus = "REACHED"
	ExecutionHoldout            CampaignExecutionStatus = "HOLDOUT"
	ExecutionSuppressedConsent  CampaignExecutionStatus = "SUPPRESSED_CONSENT"
	ExecutionSuppressedCap      CampaignExecutionStatus = "SUPPRESSED_CAP"
	ExecutionSuppressedPriority CampaignExecutionStatus = "SUPPRESSED_PRIORITY"
	ExecutionSuppressedBudget   CampaignExecutionStatus = "SUPPRESSED_BUDGET"
	ExecutionFailed             CampaignExecutionStatus = "FAILED"
)

func (CampaignExecutionStatus) Values() []string {
	return []string{"REACHED", "HOLDOUT", "SUPPRESSED_CONSENT", "SUPPRESSED_CAP", "SUPPRESSED_PRIORITY",
		"SUPPRESSED_BUDGET", "FAILED"}
}
func (e CampaignExecutionStatus) MarshalGQL(w io.Writer)    { marshal(w, string(e)) }
func (e *CampaignExecutionStatus) UnmarshalGQL(v any) error { return unmarshal(v, e) }
