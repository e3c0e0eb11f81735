package attach

import (
	"context"
	"time"
)

// UndoTimeout bounds undoing a half-done change (UndoContext).
const UndoTimeout = 30 * time.Second

// UndoContext is the context for undoing a half-done change. The caller
// may have given up (its CNI call timed out, the runtime killed the
// plugin), which is often why the change failed; what was made must still
// go, so the undo does not end with the caller, only after UndoTimeout.
func UndoContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), UndoTimeout)
}
