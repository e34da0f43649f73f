// Package batch merges concurrent requests into one round trip.
//
// A request waits only while the previous batch is in flight: at low load
// every request goes alone, at once; under load, requests that arrive during
// a round trip go together in the next one. Redis pipelines are the use:
// one write and one read carry the work of many concurrent senders.
package batch

import "context"

// Runner carries out a batch. It must answer every request in the batch.
type Runner[Req any] func(ctx context.Context, reqs []Req)

// Batcher queues requests for its Runner.
type Batcher[Req any] struct {
	in  chan Req
	max int
	run Runner[Req]
}

// New returns a Batcher handing at most max requests to run at a time.
func New[Req any](max int, run Runner[Req]) *Batcher[Req] {
	return &Batcher[Req]{in: make(chan Req, max*4), max: max, run: run}
}

// Do queues req, or gives up when ctx ends first.
func (b *Batcher[Req]) Do(ctx context.Context, req Req) error {
	select {
	case b.in <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run carries out batches until ctx ends; requests still queued then are
// handed to run with the ended context, so that each is answered.
func (b *Batcher[Req]) Run(ctx context.Context) {
	reqs := make([]Req, 0, b.max)
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-b.in:
					b.run(ctx, []Req{r})
				default:
					return
				}
			}
		case r := <-b.in:
			reqs = append(reqs[:0], r)
		fill:
			for len(reqs) < b.max {
				select {
				case r := <-b.in:
					reqs = append(reqs, r)
				default:
					break fill
				}
			}
			b.run(ctx, reqs)
		}
	}
}
