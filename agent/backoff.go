package agent

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential with full jitter, so that a thousand agents that lost the coordinator
// at the same moment do not reconnect at the same moment.
type backoff struct {
	initial, max time.Duration
	attempt      int
}

func (b *backoff) next() time.Duration {
	ceiling := b.initial << min(b.attempt, 30)
	if ceiling > b.max || ceiling <= 0 {
		ceiling = b.max
	}
	b.attempt++
	// Half fixed, half random: never hammer, never wait longer than the ceiling.
	return ceiling/2 + rand.N(ceiling/2+1)
}

func (b *backoff) reset() { b.attempt = 0 }
