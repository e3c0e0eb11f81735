package vppagent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/binapi"
	"github.com/telcni/telcni/vppagent/vpptest"
)

// A VPP without the memif plugin lacks required messages: the agent
// refuses it and says which messages differ.
func TestVPPIncompatibleIsRefused(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{Without: []string{"memif_plugin.so"}})
	m, err := NewManager(Config{Conn: ConnConfig{APISocket: v.APISocket, MaxBackoff: 200 * time.Millisecond},
		RunDir: shortTemp(t), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = m.Ready()
		var ie *binapi.IncompatibleError
		if errors.As(err, &ie) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready() = %v, want an incompatibility", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(err.Error(), "memif_create_v2_") || !strings.Contains(err.Error(), v.APISocket) {
		t.Errorf("refusal %q does not name memif_create_v2 and the socket", err)
	}
}

// A VPP without the vhost plugin serves memif networks; vhost-user ADDs
// are refused naming the missing API.
func TestVPPWithoutVhostPlugin(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{Without: []string{"vhost_plugin.so"}})
	a := startAgent(t, v, nil, shortTemp(t))
	ctx := context.Background()
	if _, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "m0", Netns: newNetns(t), Network: l2Net()}); err != nil {
		t.Fatalf("memif ADD on a VPP without vhost: %v", err)
	}
	_, err := a.m.Add(ctx, PodInterface{ContainerID: cidA, IfName: "vh0", Network: Network{Name: "vh", Kind: KindVhostUser}})
	var me *MissingPluginError
	if !errors.As(err, &me) || me.Group != "vhost_user" {
		t.Fatalf("vhost-user ADD on a VPP without vhost: %v", err)
	}
}

// A record VPP cannot rebuild (vhost-user on a VPP without the vhost
// plugin) does not keep VPP from serving the other networks.
func TestVPPUnrebuildableRecordDoesNotBlock(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{Without: []string{"vhost_plugin.so"}})
	stale := PodInterface{ContainerID: cidB, IfName: "vh0", Network: Network{Name: "vh", Kind: KindVhostUser}}
	a := startAgent(t, v, []PodInterface{stale}, shortTemp(t)) // fails the test if never ready
	if _, err := a.m.Add(context.Background(), PodInterface{ContainerID: cidA, IfName: "m0", Netns: newNetns(t), Network: l2Net()}); err != nil {
		t.Fatalf("memif ADD beside an unrebuildable record: %v", err)
	}
}
