package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-push/herald/pkg/protocol"
)

// MinSecretLength is the shortest HS256 secret accepted (256 bits).
const MinSecretLength = 32

// TokenConfig says how connection tokens are verified. At least one key
// source must be set; each enables exactly its algorithm: a secret HS256,
// RSA keys RS256, P-256 keys ES256. No other algorithm is ever accepted, so
// neither "none" nor an RS256 public key used as an HS256 secret can pass.
type TokenConfig struct {
	HS256Secret   []byte
	PublicKeysPEM []byte // one or more PEM "PUBLIC KEY" blocks, RSA or EC P-256
	JWKS          []byte // a JSON Web Key Set of RSA and EC P-256 keys
	Audience      string // required "aud" when set
	Issuer        string // required "iss" when set
	Leeway        time.Duration
}

// Verifier checks connection tokens.
type Verifier struct {
	parser *jwt.Parser
	hmac   []byte
	rsa    []*rsa.PublicKey
	ec     []*ecdsa.PublicKey
	byKID  map[string]any
}

// Claims is what a valid token grants.
type Claims struct {
	// Key is the token's subject: the only key the connection receives.
	Key string
	// Topics the connection may join; nil when the token names none.
	Topics []string
	// Expires is when the connection must end.
	Expires time.Time
}

// tokenClaims are the claims herald reads. The dates are numericDates, not
// jwt.NumericDate: that one also takes a quoted number ("exp":"1795726800"),
// which RFC 7519 §2 does not allow, and a token that bends the format is
// more likely forged or broken than meant.
type tokenClaims struct {
	Subject   string           `json:"sub"`
	Issuer    string           `json:"iss"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
	Topics    []string         `json:"topics,omitempty"`
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.get(), nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.get(), nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.get(), nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Subject, nil }

// numericDate is a NumericDate that must be a JSON number.
type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errors.New("a date claim must be a JSON number (NumericDate)")
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *numericDate) get() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// NewVerifier builds a Verifier from cfg.
func NewVerifier(cfg TokenConfig) (*Verifier, error) {
	v := &Verifier{byKID: map[string]any{}}
	if cfg.HS256Secret != nil {
		if len(cfg.HS256Secret) < MinSecretLength {
			return nil, fmt.Errorf("token secret: shorter than %d bytes", MinSecretLength)
		}
		v.hmac = cfg.HS256Secret
	}
	if cfg.PublicKeysPEM != nil {
		if err := v.addPEM(cfg.PublicKeysPEM); err != nil {
			return nil, err
		}
	}
	if cfg.JWKS != nil {
		if err := v.addJWKS(cfg.JWKS); err != nil {
			return nil, err
		}
	}
	var methods []string
	if v.hmac != nil {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if len(v.rsa) > 0 {
		methods = append(methods, jwt.SigningMethodRS256.Alg())
	}
	if len(v.ec) > 0 {
		methods = append(methods, jwt.SigningMethodES256.Alg())
	}
	if len(methods) == 0 {
		return nil, errors.New("tokens: no secret or public key configured")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func (v *Verifier) addPEM(data []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return fmt.Errorf("token public keys: PEM block %q, want PUBLIC KEY", block.Type)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("token public keys: %w", err)
		}
		if err := v.addKey("", key); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("token public keys: no PEM block found")
	}
	return nil
}

func (v *Verifier) addKey(kid string, key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("token public keys: RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		v.rsa = append(v.rsa, k)
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return errors.New("token public keys: EC key not on P-256 (ES256)")
		}
		v.ec = append(v.ec, k)
	default:
		return fmt.Errorf("token public keys: unsupported key type %T", key)
	}
	if kid != "" {
		v.byKID[kid] = key
	}
	return nil
}

// jwk is the part of a JSON Web Key herald reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (v *Verifier) addJWKS(data []byte) error {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("token jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("token jwks: no keys")
	}
	b64 := base64.RawURLEncoding.DecodeString
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		switch k.Kty {
		case "RSA":
			n, err1 := b64(k.N)
			e, err2 := b64(k.E)
			if err := errors.Join(err1, err2); err != nil || len(e) == 0 || len(e) > 4 {
				return fmt.Errorf("token jwks: key %d: bad RSA modulus or exponent", i)
			}
			key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			if k.Crv != "P-256" {
				return fmt.Errorf("token jwks: key %d: curve %q, want P-256", i, k.Crv)
			}
			x, err1 := b64(k.X)
			y, err2 := b64(k.Y)
			if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
				return fmt.Errorf("token jwks: key %d: bad EC point", i)
			}
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return fmt.Errorf("token jwks: key %d: %w", i, err)
			}
			key = pk
		default:
			return fmt.Errorf("token jwks: key %d: key type %q, want RSA or EC", i, k.Kty)
		}
		if err := v.addKey(k.Kid, key); err != nil {
			return err
		}
	}
	return nil
}

// keyFor hands the parser the keys for the token's algorithm only: the
// parser has already refused algorithms outside the configured ones.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: a recipient must refuse a token whose "crit" lists
	// an extension it does not understand, and herald understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New(`header "crit" names extensions herald does not understand`)
	}
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		// Whatever its kid says: an HMAC token is checked with the secret
		// only, never with a public key a kid happens to name.
		return v.hmac, nil
	}
	if kid, _ := t.Header["kid"].(string); kid != "" {
		if k, ok := v.byKID[kid]; ok {
			return k, nil
		}
	}
	var set jwt.VerificationKeySet
	switch t.Method.(type) {
	case *jwt.SigningMethodRSA:
		for _, k := range v.rsa {
			set.Keys = append(set.Keys, k)
		}
	case *jwt.SigningMethodECDSA:
		for _, k := range v.ec {
			set.Keys = append(set.Keys, k)
		}
	default:
		return nil, fmt.Errorf("unexpected signing method %s", t.Method.Alg())
	}
	return set, nil
}

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// Verify checks the token's signature, algorithm, expiry, not-before,
// audience and issuer, and returns what it grants.
func (v *Verifier) Verify(token string) (Claims, error) {
	var c tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyFor); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !protocol.ValidName(c.Subject) {
		return Claims{}, fmt.Errorf("%w: subject must be a key of 1-128 characters of [A-Za-z0-9_.:@-]", ErrInvalidToken)
	}
	for _, t := range c.Topics {
		if !protocol.ValidName(t) {
			return Claims{}, fmt.Errorf("%w: topics claim holds an invalid topic", ErrInvalidToken)
		}
	}
	return Claims{Key: c.Subject, Topics: c.Topics, Expires: c.ExpiresAt.Time}, nil
}
