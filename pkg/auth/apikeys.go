// Package auth decides who may do what: publishers by API key and scope,
// subscribers by signed connection token (JWT).
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Scope is something an API key may do.
type Scope string

const (
	ScopeSend      Scope = "send"      // POST /v1/send
	ScopePublish   Scope = "publish"   // POST /v1/topics/{topic}, optionally limited to topic patterns
	ScopeBroadcast Scope = "broadcast" // POST /v1/broadcast
	ScopePresence  Scope = "presence"  // GET /v1/presence/{key}
	ScopeAdmin     Scope = "admin"     // GET /v1/cluster, DELETE /v1/connections/{key}
)

// MinKeyLength is the shortest API key accepted: shorter ones can be guessed.
const MinKeyLength = 24

// APIKey is one configured publisher key.
//
// Scopes name what it may do; "publish:<pattern>" limits publishing to topics
// matching the pattern (path.Match syntax, e.g. "publish:game.*").
type APIKey struct {
	Name   string   `json:"name"`
	Key    string   `json:"key"`
	Scopes []string `json:"scopes"`
}

// ParseAPIKeys decodes a JSON array of APIKey, refusing unknown fields.
func ParseAPIKeys(data []byte) ([]APIKey, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var keys []APIKey
	if err := dec.Decode(&keys); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return keys, nil
}

// Keyring holds API keys by hash, never in the clear.
type Keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	name          string
	hash          [sha256.Size]byte
	scopes        map[Scope]bool
	topicPatterns []string // nil: every topic, when ScopePublish is held
}

// NewKeyring validates keys and returns a Keyring.
func NewKeyring(keys []APIKey) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("api keys: none configured")
	}
	k := &Keyring{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for i, key := range keys {
		if key.Name == "" {
			return nil, fmt.Errorf("api key %d: no name", i)
		}
		if names[key.Name] {
			return nil, fmt.Errorf("api key %s: name used twice", key.Name)
		}
		names[key.Name] = true
		if len(key.Key) < MinKeyLength {
			return nil, fmt.Errorf("api key %s: shorter than %d characters", key.Name, MinKeyLength)
		}
		e := keyEntry{name: key.Name, hash: sha256.Sum256([]byte(key.Key)), scopes: map[Scope]bool{}}
		if hashes[e.hash] {
			return nil, fmt.Errorf("api key %s: same key as another entry", key.Name)
		}
		hashes[e.hash] = true
		if len(key.Scopes) == 0 {
			return nil, fmt.Errorf("api key %s: no scopes", key.Name)
		}
		allTopics := false
		for _, s := range key.Scopes {
			scope, pattern, limited := strings.Cut(s, ":")
			switch Scope(scope) {
			case ScopeSend, ScopeBroadcast, ScopePresence, ScopeAdmin:
				if limited {
					return nil, fmt.Errorf("api key %s: scope %q takes no pattern", key.Name, s)
				}
			case ScopePublish:
				if !limited {
					allTopics = true
					break
				}
				if _, err := path.Match(pattern, ""); err != nil || pattern == "" {
					return nil, fmt.Errorf("api key %s: bad topic pattern in %q", key.Name, s)
				}
				e.topicPatterns = append(e.topicPatterns, pattern)
			default:
				return nil, fmt.Errorf("api key %s: unknown scope %q (send, publish, publish:<pattern>, broadcast, presence, admin)", key.Name, s)
			}
			e.scopes[Scope(scope)] = true
		}
		if allTopics {
			e.topicPatterns = nil
		}
		k.entries = append(k.entries, e)
	}
	return k, nil
}

// Caller is an authenticated API key.
type Caller struct {
	e *keyEntry
}

// Name is the key's configured name, safe to log.
func (c Caller) Name() string { return c.e.name }

// Can reports whether the key holds scope.
func (c Caller) Can(s Scope) bool { return c.e.scopes[s] }

// CanPublish reports whether the key may publish to topic.
func (c Caller) CanPublish(topic string) bool {
	if !c.e.scopes[ScopePublish] {
		return false
	}
	if c.e.topicPatterns == nil {
		return true
	}
	for _, p := range c.e.topicPatterns {
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}

// Authenticate finds the key presented. It compares against every entry in
// constant time, so timing tells nothing about which key, or how much of
// one, matched.
func (k *Keyring) Authenticate(presented string) (Caller, bool) {
	h := sha256.Sum256([]byte(presented))
	found := -1
	for i := range k.entries {
		if subtle.ConstantTimeCompare(h[:], k.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Caller{}, false
	}
	return Caller{e: &k.entries[found]}, true
}
