package fanout

import (
	"errors"
	"log/slog"
	"sync/atomic"
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
}

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
		rc.log.Error("dropping undecodable bus message", "channel", channel, "err", err)
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
