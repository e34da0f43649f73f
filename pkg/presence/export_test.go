package presence

// SetReapHook makes r run f after it claimed an expired incarnation of node
// and before it removes that incarnation's entries, so that a test can
// interleave a returning node's writes with the reaping deterministically.
func SetReapHook(r *Redis, f func(node string)) { r.reapHook = f }
