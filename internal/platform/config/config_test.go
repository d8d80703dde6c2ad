package config

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadNamesEveryBadSetting(t *testing.T) {
	t.Setenv("APP_ENV", "production")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("BUSINESS_TIMEZONE", "Mars/Olympus")
	t.Setenv("PII_ENCRYPTION_KEY", base64.StdEncoding.EncodeToString([]byte("short")))
	_, err := Load()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"DATABASE_URL", "BUSINESS_TIMEZONE", "PII_ENCRYPTION_KEY", "JWT_SECRET", "SMS_GATEWAY_URL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	t.Setenv("ACCESS_TOKEN_TTL", "soon")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "ACCESS_TOKEN_TTL") {
		t.Errorf("unparsable duration: %v", err)
	}
}

func TestDevelopmentKeysAreGeneratedOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	t.Setenv("APP_ENV", "development")
	t.Setenv("DATABASE_URL", "postgres://localhost/x")
	t.Setenv("DEV_KEYS_FILE", file)
	a, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Keys.JWT) != 32 || string(a.Keys.JWT) != string(b.Keys.JWT) || string(a.Keys.PIIEnc) == string(a.Keys.PIIIndex) {
		t.Fatal("development keys not generated once and kept")
	}
	if a.ListenAddr != ":8080" || a.Env != Development {
		t.Fatalf("defaults: %+v", a)
	}
}
