package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/refreshtoken"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/platform/database"
)

// RefreshTokenPrefix marks refresh tokens.
const RefreshTokenPrefix = "omr_"

// Tokens is what a sign-in or refresh hands the client.
type Tokens struct {
	Access    string
	Refresh   string
	ExpiresAt time.Time
	Kind      token.Kind
	SubjectID int
}

// Sessions issues access tokens and rotating refresh tokens. A session is a
// family of refresh tokens: each refresh uses one up and issues the next;
// presenting a used one means a copy leaked, and the whole family is
// revoked.
type Sessions struct {
	db         *ent.Client
	tokens     *token.Issuer
	refreshTTL time.Duration
	now        func() time.Time
}

// NewSessions builds a Sessions.
func NewSessions(db *ent.Client, tokens *token.Issuer, refreshTTL time.Duration, now func() time.Time) *Sessions {
	return &Sessions{db: db, tokens: tokens, refreshTTL: refreshTTL, now: now}
}

// Start opens a new session for a subject. It writes through tx when one is
// given, so that registration and its first session commit together.
func (s *Sessions) Start(ctx context.Context, tx *ent.Tx, kind token.Kind, subjectID int) (Tokens, error) {
	client := s.db
	if tx != nil {
		client = tx.Client()
	}
	return s.issue(ctx, client, uuid.NewString(), kind, subjectID)
}

func (s *Sessions) issue(ctx context.Context, db *ent.Client, family string, kind token.Kind, subjectID int) (Tokens, error) {
	refresh, hash, err := token.NewOpaque(RefreshTokenPrefix)
	if err != nil {
		return Tokens{}, err
	}
	err = db.RefreshToken.Create().
		SetTokenHash(hash).SetFamily(family).
		SetSubjectKind(string(kind)).SetSubjectID(subjectID).
		SetCreatedAt(s.now()).SetExpiresAt(s.now().Add(s.refreshTTL)).
		Exec(ctx)
	if err != nil {
		return Tokens{}, fmt.Errorf("storing refresh token: %w", err)
	}
	access, exp, err := s.tokens.Issue(kind, subjectID, family)
	if err != nil {
		return Tokens{}, fmt.Errorf("issuing access token: %w", err)
	}
	return Tokens{Access: access, Refresh: refresh, ExpiresAt: exp, Kind: kind, SubjectID: subjectID}, nil
}

// Refresh rotates a refresh token. The row is locked so that two refreshes
// racing with one token cannot both succeed: the loser sees it used and
// revokes the family, which is the safe outcome for a duplicated token.
func (s *Sessions) Refresh(ctx context.Context, refresh string) (Tokens, error) {
	var reused string
	out, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (Tokens, error) {
		rt, err := tx.RefreshToken.Query().
			Where(refreshtoken.TokenHash(token.HashOpaque(refresh))).
			ForUpdate().Only(ctx)
		if ent.IsNotFound(err) {
			return Tokens{}, ErrBadCredentials
		}
		if err != nil {
			return Tokens{}, fmt.Errorf("loading refresh token: %w", err)
		}
		now := s.now()
		switch {
		case rt.RevokedAt != nil:
			return Tokens{}, ErrSessionRevoked
		case rt.UsedAt != nil:
			reused = rt.Family
			return Tokens{}, ErrRefreshReuse
		case !now.Before(rt.ExpiresAt):
			return Tokens{}, ErrTokenExpired
		}
		if err := tx.RefreshToken.UpdateOne(rt).SetUsedAt(now).Exec(ctx); err != nil {
			return Tokens{}, fmt.Errorf("using refresh token: %w", err)
		}
		return s.issue(ctx, tx.Client(), rt.Family, token.Kind(rt.SubjectKind), rt.SubjectID)
	})
	if reused != "" {
		// Outside the rolled-back transaction: the revocation must stick.
		if rerr := s.RevokeFamily(ctx, reused); rerr != nil {
			return Tokens{}, rerr
		}
	}
	return out, err
}

// RevokeFamily ends a session: none of its refresh tokens work any more.
func (s *Sessions) RevokeFamily(ctx context.Context, family string) error {
	_, err := s.db.RefreshToken.Update().
		Where(refreshtoken.Family(family), refreshtoken.RevokedAtIsNil()).
		SetRevokedAt(s.now()).Save(ctx)
	if err != nil {
		return fmt.Errorf("revoking session: %w", err)
	}
	return nil
}

// RevokeSubject ends every session of a subject (used when a member is
// merged, erased or a staff account disabled).
func (s *Sessions) RevokeSubject(ctx context.Context, db *ent.Client, kind token.Kind, subjectID int) error {
	_, err := db.RefreshToken.Update().
		Where(refreshtoken.SubjectKind(string(kind)), refreshtoken.SubjectID(subjectID), refreshtoken.RevokedAtIsNil()).
		SetRevokedAt(s.now()).Save(ctx)
	if err != nil {
		return fmt.Errorf("revoking sessions: %w", err)
	}
	return nil
}
