package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/pkg/auth"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func valid() jwt.MapClaims {
	return jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix(), "topics": []string{"board"}}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	c[k] = v
	return c
}

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestTokensAreVerifiedStrictly(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPEM := pemOf(t, &rsaKey.PublicKey)

	hs, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: secret, Audience: "herald", Issuer: "game", Leeway: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := auth.NewVerifier(auth.TokenConfig{PublicKeysPEM: append(rsaPEM, pemOf(t, &ecKey.PublicKey)...)})
	if err != nil {
		t.Fatal(err)
	}
	hsClaims := func() jwt.MapClaims { return with(with(valid(), "aud", "herald"), "iss", "game") }
	now := time.Now()

	tests := []struct {
		name     string
		verifier *auth.Verifier
		token    string
		ok       bool
	}{
		{"HS256 with everything right", hs, sign(t, jwt.SigningMethodHS256, secret, hsClaims()), true},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "exp", now.Add(-time.Minute).Unix())), false},
		{"expired within the leeway", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "exp", now.Add(-2*time.Second).Unix())), true},
		{"not yet valid", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "nbf", now.Add(time.Minute).Unix())), false},
		{"without expiry", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u1", "aud": "herald", "iss": "game"}), false},
		{"wrong audience", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "aud", "other")), false},
		{"wrong issuer", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "iss", "mallory")), false},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), hsClaims()), false},
		{"HS384 is not configured", hs, sign(t, jwt.SigningMethodHS384, secret, hsClaims()), false},
		{"alg none", hs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hsClaims()), false},
		{"subject that is not a key", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "sub", "u 1")), false},
		{"missing subject", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "aud": "herald", "iss": "game"}), false},
		{"bad topic in claim", hs, sign(t, jwt.SigningMethodHS256, secret, with(hsClaims(), "topics", []string{"a b"})), false},
		{"garbage", hs, "not.a.token", false},
		{"empty", hs, "", false},
		{"RS256", pk, sign(t, jwt.SigningMethodRS256, rsaKey, valid()), true},
		{"ES256", pk, sign(t, jwt.SigningMethodES256, ecKey, valid()), true},
		{"RS256 from an unknown key", pk, sign(t, jwt.SigningMethodRS256, otherRSA, valid()), false},
		// The classic confusion: the public key's bytes used as an HMAC secret.
		{"HS256 signed with the RSA public key", pk, sign(t, jwt.SigningMethodHS256, rsaPEM, valid()), false},
		{"alg none against public keys", pk, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()), false},
		{"PS256 is not configured", pk, sign(t, jwt.SigningMethodPS256, rsaKey, valid()), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.verifier.Verify(tc.token)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused a good token: %v", err)
				}
				if c.Key != "u1" || len(c.Topics) != 1 || c.Topics[0] != "board" || c.Expires.IsZero() {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted a bad token: %+v", c)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
		})
	}
}

func TestJWKSKeysVerifyByKeyID(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	ecPoint, _ := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecPoint[1:33]), "y": b64(ecPoint[33:])},
	}})
	v, err := auth.NewVerifier(auth.TokenConfig{JWKS: set})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*jwt.Token{
		"RS256 r1": jwt.NewWithClaims(jwt.SigningMethodRS256, valid()),
		"ES256 e1": jwt.NewWithClaims(jwt.SigningMethodES256, valid()),
	} {
		var key any = rsaKey
		tok.Header["kid"] = "r1"
		if strings.HasPrefix(name, "ES") {
			key, tok.Header["kid"] = ecKey, "e1"
		}
		s, _ := tok.SignedString(key)
		if _, err := v.Verify(s); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	// A kid naming the RSA key on an ES256 token must not verify.
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, valid())
	tok.Header["kid"] = "r1"
	s, _ := tok.SignedString(ecKey)
	if _, err := v.Verify(s); err == nil {
		t.Error("ES256 token verified against the RSA key its kid named")
	}
}

func TestVerifierConfigurationMistakesAreRefused(t *testing.T) {
	weakRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := map[string]auth.TokenConfig{
		"nothing":       {},
		"short secret":  {HS256Secret: []byte("short")},
		"not PEM":       {PublicKeysPEM: []byte("hello")},
		"1024-bit RSA":  {PublicKeysPEM: pemOf(t, &weakRSA.PublicKey)},
		"P-384 EC":      {PublicKeysPEM: pemOf(t, &p384.PublicKey)},
		"empty JWKS":    {JWKS: []byte(`{"keys":[]}`)},
		"JWKS oct key":  {JWKS: []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)},
		"JWKS bad json": {JWKS: []byte(`{`)},
	}
	for name, cfg := range tests {
		if _, err := auth.NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAPIKeysAuthenticateAndCarryScopes(t *testing.T) {
	keys, err := auth.ParseAPIKeys([]byte(`[
		{"name":"game","key":"game-key-0123456789abcdef","scopes":["send","presence"]},
		{"name":"boards","key":"board-key-0123456789abcdef","scopes":["publish:city.*","publish:board"]},
		{"name":"ops","key":"ops-key-0123456789abcdefgh","scopes":["admin","broadcast","publish"]}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := auth.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ring.Authenticate("game-key-0123456789abcdeX"); ok {
		t.Fatal("a wrong key authenticated")
	}
	if _, ok := ring.Authenticate(""); ok {
		t.Fatal("an empty key authenticated")
	}
	game, ok := ring.Authenticate("game-key-0123456789abcdef")
	if !ok || game.Name() != "game" || !game.Can(auth.ScopeSend) || game.Can(auth.ScopeAdmin) || game.CanPublish("board") {
		t.Fatalf("game key: ok=%v scopes wrong", ok)
	}
	boards, _ := ring.Authenticate("board-key-0123456789abcdef")
	for topic, want := range map[string]bool{"board": true, "city.north": true, "city": false, "news": false} {
		if boards.CanPublish(topic) != want {
			t.Errorf("boards may publish to %s: %v, want %v", topic, !want, want)
		}
	}
	ops, _ := ring.Authenticate("ops-key-0123456789abcdefgh")
	if !ops.CanPublish("anything") || !ops.Can(auth.ScopeBroadcast) || ops.Can(auth.ScopeSend) {
		t.Error("ops key scopes wrong")
	}
}

func TestAPIKeyConfigurationMistakesAreRefused(t *testing.T) {
	long := "k-0123456789abcdefghijklmn"
	tests := map[string]string{
		"unknown field":   `[{"name":"a","key":"` + long + `","scopes":["send"],"extra":1}]`,
		"no name":         `[{"key":"` + long + `","scopes":["send"]}]`,
		"short key":       `[{"name":"a","key":"short","scopes":["send"]}]`,
		"no scopes":       `[{"name":"a","key":"` + long + `"}]`,
		"unknown scope":   `[{"name":"a","key":"` + long + `","scopes":["root"]}]`,
		"bad pattern":     `[{"name":"a","key":"` + long + `","scopes":["publish:["]}]`,
		"pattern on send": `[{"name":"a","key":"` + long + `","scopes":["send:x"]}]`,
		"duplicate name":  `[{"name":"a","key":"` + long + `","scopes":["send"]},{"name":"a","key":"` + long + `x","scopes":["send"]}]`,
		"duplicate key":   `[{"name":"a","key":"` + long + `","scopes":["send"]},{"name":"b","key":"` + long + `","scopes":["send"]}]`,
		"empty":           `[]`,
	}
	for name, js := range tests {
		keys, err := auth.ParseAPIKeys([]byte(js))
		if err == nil {
			_, err = auth.NewKeyring(keys)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A backend's token that bends the JWT format is refused, and an HS256
// token is checked with the secret whatever key id it carries.
func TestTokensBendingTheFormatAreRefusedAndHS256IgnoresKeyIDs(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
	}})
	v, err := auth.NewVerifier(auth.TokenConfig{HS256Secret: secret, JWKS: set})
	if err != nil {
		t.Fatal(err)
	}
	signed := func(method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, claims)
		for k, val := range header {
			tok.Header[k] = val
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hourAhead := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"HS256 without kid", signed(jwt.SigningMethodHS256, secret, nil, valid()), true},
		{"HS256 whose kid names a JWKS key", signed(jwt.SigningMethodHS256, secret, map[string]any{"kid": "r1"}, valid()), true},
		{"HS256 whose kid names no key", signed(jwt.SigningMethodHS256, secret, map[string]any{"kid": "k9"}, valid()), true},
		{"RS256 with its kid", signed(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "r1"}, valid()), true},
		{"crit naming an unknown extension", signed(jwt.SigningMethodHS256, secret, map[string]any{"crit": []string{"x-herald-never"}}, with(valid(), "x-herald-never", 1)), false},
		{"crit naming exp", signed(jwt.SigningMethodHS256, secret, map[string]any{"crit": []string{"exp"}}, valid()), false},
		{"empty crit", signed(jwt.SigningMethodHS256, secret, map[string]any{"crit": []string{}}, valid()), false},
		{"crit on RS256", signed(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "r1", "crit": []string{"b64"}}, valid()), false},
		{"exp as a string", signed(jwt.SigningMethodHS256, secret, nil, with(valid(), "exp", strconv.FormatInt(hourAhead, 10))), false},
		{"nbf as a string", signed(jwt.SigningMethodHS256, secret, nil, with(valid(), "nbf", "0")), false},
		{"iat as a string", signed(jwt.SigningMethodHS256, secret, nil, with(valid(), "iat", "0")), false},
		{"exp as a boolean", signed(jwt.SigningMethodHS256, secret, nil, with(valid(), "exp", true)), false},
		{"exp with a fraction", signed(jwt.SigningMethodHS256, secret, nil, with(valid(), "exp", float64(hourAhead)+0.5)), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.token)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused a good token: %v", err)
				}
				if c.Key != "u1" || c.Expires.IsZero() {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted a bad token: %+v", c)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
		})
	}
}
