package inbox

// OrderLen is how many append-order slots m holds, for tests.
func (m *Memory) OrderLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.order) - m.head
}
