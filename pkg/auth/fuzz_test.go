package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/pkg/auth"
	"github.com/herald-push/herald/pkg/protocol"
)

// FuzzVerifyToken feeds arbitrary strings to the verifier: it must never
// panic, and whatever it accepts must name a valid key and expire.
func FuzzVerifyToken(f *testing.F) {
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "u1", "exp": time.Now().Add(24 * 365 * time.Hour).Unix(), "topics": []string{"board"},
	}).SignedString(secret)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": 9999999999}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, s := range []string{good, none, "", ".", "..", "a.b.c", good + "x", strings.Replace(good, ".", "..", 1),
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9."} {
		f.Add(s)
	}
	v, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			return
		}
		if !protocol.ValidName(c.Key) || c.Expires.IsZero() {
			t.Fatalf("accepted %q as %+v", token, c)
		}
		for _, topic := range c.Topics {
			if !protocol.ValidName(topic) {
				t.Fatalf("accepted topic %q", topic)
			}
		}
	})
}
