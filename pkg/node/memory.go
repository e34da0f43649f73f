package node

import "time"

// redisFullRetry is the Retry-After of a storage_full answer from Redis:
// room comes back when an operator raises maxmemory or messages age out,
// not within a second.
const redisFullRetry = 10 * time.Second

// roomInRedis returns nil while Redis is below its high-water mark, else
// the storage_full answer for a request that would grow Redis (a stored
// send, a history post, an Idempotency-Key record). Refusing those early
// keeps the rest of maxmemory for heartbeats, presence and pub/sub, which
// with noeviction would otherwise be refused with everything else.
//
// cost is what the request would add to Redis: it is counted against the
// headroom now, so that concurrent requests cannot all pass the check.
func (n *Node) roomInRedis(cost int64) error {
	if n.mem.Evicting() {
		return retryLater(Errorf(KindUnavailable, "storage_full",
			"Redis's maxmemory-policy evicts keys (changed since this node started): a message stored now could vanish "+
				"with its 200 answer given, so stored sends, history posts and Idempotency-Key requests are refused; nothing was stored or sent. "+
				"Set maxmemory-policy noeviction, or start the nodes with --allow-evicting-redis"), redisFullRetry)
	}
	ratio, ok := n.mem.Reserve(cost)
	if ok {
		return nil
	}
	if ratio >= 1 {
		return retryLater(Errorf(KindUnavailable, "storage_full",
			"Redis is out of memory (used memory at %.0f%% of maxmemory): it refuses writes, presence heartbeats included; "+
				"stored sends, history posts and Idempotency-Key requests are refused; nothing was stored or sent. "+
				"Raise maxmemory or free memory, then retry", ratio*100), redisFullRetry)
	}
	return retryLater(Errorf(KindUnavailable, "storage_full",
		"Redis is above its high-water mark (used memory at %.0f%% of maxmemory, the mark is %.0f%%): stored sends, history posts "+
			"and Idempotency-Key requests are refused so that presence and live sends keep working; nothing was stored or sent. "+
			"Retry later; sends without store, wait or Idempotency-Key still go out", ratio*100, n.mem.Mark()*100), redisFullRetry)
}

// storageFull is the answer to a write the store refused as full: single
// (the in-process bound's answer) without Redis, else Redis's own refusal
// for memory, which something besides herald may have caused, or a burst
// of other nodes' writes between two readings.
func (n *Node) storageFull(single *Error) error {
	if n.rdb == nil {
		return single
	}
	n.mem.Refused()
	return retryLater(Errorf(KindUnavailable, "storage_full",
		"Redis is out of memory (at its maxmemory) and refused to store this; nothing was stored or sent. "+
			"Retry later; sends without store, wait or Idempotency-Key still go out"), redisFullRetry)
}
