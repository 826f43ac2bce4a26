package agent

import (
	"context"
	"fmt"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// commandRouter sends each command to the handler of its kind: drains to the drain command,
// prefetches to the state cache.
type commandRouter struct {
	drain    CommandHandler
	prefetch CommandHandler // nil when the state cache is off
}

func (r commandRouter) Handle(ctx context.Context, cmd *tmwardenv1.Command, progress func(*tmwardenv1.CommandProgress)) error {
	switch cmd.Action.(type) {
	case *tmwardenv1.Command_Drain:
		return r.drain.Handle(ctx, cmd, progress)
	case *tmwardenv1.Command_Prefetch:
		if r.prefetch == nil {
			return fmt.Errorf("command %s: prefetch: %w: the state cache is not enabled on this agent (state_cache.enabled)", cmd.Id, ErrUnsupportedCommand)
		}
		return r.prefetch.Handle(ctx, cmd, progress)
	default:
		return fmt.Errorf("command %s: %w: %T", cmd.Id, ErrUnsupportedCommand, cmd.Action)
	}
}
