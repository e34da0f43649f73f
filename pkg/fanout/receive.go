package fanout

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// receiver decodes the payloads a Redis subscription hands over, and
// counts and logs those it cannot decode.
type receiver struct {
	log            *slog.Logger
	unknownVersion func()
	// loggedVersion: a frame of an unknown version was logged. One line
	// is enough: during a rolling upgrade every message of the newer
	// nodes would repeat it.
	loggedVersion atomic.Bool
	// lastMalformed (unix ns) and suppressed rate the log of undecodable
	// messages: anyone who may PUBLISH to Redis could otherwise fill the
	// node's log with one line per frame.
	lastMalformed atomic.Int64
	suppressed    atomic.Int64
}

// malformedLogEvery is the least time between two lines about undecodable
// messages; the line says how many were dropped without one.
const malformedLogEvery = 10 * time.Second

func newReceiver(o RedisOptions) receiver {
	return receiver{log: o.Logger, unknownVersion: o.UnknownVersion}
}

// decode decodes payload, received on channel, into m, or drops it and
// returns false.
func (rc *receiver) decode(m *Message, channel, payload string) bool {
	err := m.UnmarshalString(payload)
	if err == nil {
		return true
	}
	var uv UnknownVersionError
	if !errors.As(err, &uv) {
		now, last := time.Now().UnixNano(), rc.lastMalformed.Load()
		if now-last < int64(malformedLogEvery) || !rc.lastMalformed.CompareAndSwap(last, now) {
			rc.suppressed.Add(1)
			return false
		}
		rc.log.Error("dropping undecodable bus message", "channel", channel, "err", err,
			"dropped_unlogged", rc.suppressed.Swap(0), "logged_at_most_every", malformedLogEvery)
		return false
	}
	rc.unknownVersion()
	if rc.loggedVersion.CompareAndSwap(false, true) {
		rc.log.Warn("dropping bus messages of a wire version this node does not read: a node more than one release newer wrote them; "+
			"upgrade one release at a time (docs/architecture.md#between-nodes-the-wire-format); "+
			"logged once, counted in herald_bus_unknown_version_total",
			"version", uv.Version, "channel", channel)
	}
	return false
}
