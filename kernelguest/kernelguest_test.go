package kernelguest

import (
	"strings"
	"testing"
)

// skipRecorder is a testing.TB whose Skip records instead of ending the test.
type skipRecorder struct {
	testing.TB
	skipped string
}

func (r *skipRecorder) Helper()          {}
func (r *skipRecorder) Skip(args ...any) { r.skipped = sprint(args) }

func sprint(args []any) string {
	var b strings.Builder
	for _, a := range args {
		if s, ok := a.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func TestRequire(t *testing.T) {
	t.Setenv(EnvGuest, "")
	r := &skipRecorder{TB: t}
	Require(r)
	if !strings.Contains(r.skipped, "make test-kernel") || !strings.Contains(r.skipped, "scripts/kernelguest/run.sh") {
		t.Fatalf("on the host Require skipped with %q, want the harness command named", r.skipped)
	}

	t.Setenv(EnvGuest, "1")
	r = &skipRecorder{TB: t}
	Require(r)
	if r.skipped != "" {
		t.Fatalf("in the guest Require skipped: %q", r.skipped)
	}
}
