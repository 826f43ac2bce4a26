package agent

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential with full jitter, so that a thousand agents that lost the coordinator
// at the same moment do not reconnect at the same moment. The scale benchmark's simulated
// agents reconnect with it too, so that they behave as the fleet does.
type Backoff struct {
	Initial, Max time.Duration
	attempt      int
}

// Next is how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	ceiling := b.Initial << min(b.attempt, 30)
	if ceiling > b.Max || ceiling <= 0 {
		ceiling = b.Max
	}
	b.attempt++
	// Half fixed, half random: never hammer, never wait longer than the ceiling.
	return ceiling/2 + rand.N(ceiling/2+1)
}

// Reset starts again from Initial, after an attempt that succeeded.
func (b *Backoff) Reset() { b.attempt = 0 }
