package binapi

import (
	"errors"
	"strings"
	"testing"

	"go.fd.io/govpp/api"
)

// fakeVPP knows every message except those in missing (by name).
type fakeVPP struct{ missing map[string]bool }

func (f fakeVPP) CheckCompatiblity(msgs ...api.Message) error {
	var ce api.CompatibilityError
	for _, m := range msgs {
		id := m.GetMessageName() + "_" + m.GetCrcString()
		if f.missing[m.GetMessageName()] {
			ce.IncompatibleMessages = append(ce.IncompatibleMessages, id)
		} else {
			ce.CompatibleMessages = append(ce.CompatibleMessages, id)
		}
	}
	if len(ce.IncompatibleMessages) > 0 {
		return &ce
	}
	return nil
}

func TestCheck(t *testing.T) {
	if rep, err := Check(fakeVPP{}); err != nil || len(rep.Missing) != 0 {
		t.Fatalf("compatible VPP: %+v %v", rep, err)
	}
	// A changed memif_create_v2 makes VPP incompatible, and is named.
	_, err := Check(fakeVPP{missing: map[string]bool{"memif_create_v2": true}})
	var ie *IncompatibleError
	if !errors.As(err, &ie) || len(ie.Messages) != 1 || !strings.HasPrefix(ie.Messages[0], "memif_create_v2_") || !strings.Contains(err.Error(), "memif_create_v2_") {
		t.Fatalf("incompatible VPP: %v", err)
	}
	// avf plugin not loaded at all: optional, reported as missing.
	all := map[string]bool{}
	for _, g := range Groups {
		if g.Name == "avf" {
			for _, m := range g.Messages {
				all[m.GetMessageName()] = true
			}
		}
	}
	rep, err := Check(fakeVPP{missing: all})
	if err != nil || len(rep.Missing) != 1 || rep.Missing[0] != "avf" {
		t.Fatalf("VPP without avf: %+v %v", rep, err)
	}
	// Half an optional group is an incompatibility, not a missing plugin.
	_, err = Check(fakeVPP{missing: map[string]bool{"avf_create": true}})
	if !errors.As(err, &ie) {
		t.Fatalf("VPP with a changed avf_create: %v", err)
	}
}

func TestMessagesArePairsOfKnownTypes(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Messages() {
		if seen[m.GetMessageName()] {
			t.Errorf("%s listed twice", m.GetMessageName())
		}
		seen[m.GetMessageName()] = true
	}
	for name := range seen {
		if strings.HasSuffix(name, "_reply") && !seen[strings.TrimSuffix(name, "_reply")] {
			t.Errorf("%s without its request", name)
		}
	}
}
