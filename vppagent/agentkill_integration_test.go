package vppagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/telcni/telcni/vppagent/vpptest"
)

// helperEnv makes the test binary act as an agent process that ADDs one
// pod interface and then waits to be killed.
const helperEnv = "TELCNI_VPPAGENT_HELPER"

type helperArgs struct {
	APISocket, RunDir string
	Spec              PodInterface
}

func TestMain(m *testing.M) {
	if arg := os.Getenv(helperEnv); arg != "" {
		os.Exit(helperAgent(arg))
	}
	os.Exit(m.Run())
}

func helperAgent(arg string) int {
	var h helperArgs
	if err := json.Unmarshal([]byte(arg), &h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mgr, err := NewManager(Config{Conn: ConnConfig{APISocket: h.APISocket}, RunDir: h.RunDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	go mgr.Run(ctx) // lives until the process is killed
	for i := 0; mgr.Ready() != nil; i++ {
		if i > 200 {
			fmt.Fprintln(os.Stderr, mgr.Ready())
			return 2
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := mgr.Retain(ctx, nil); err != nil { // a fresh agent
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := mgr.Add(ctx, h.Spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ADDED")
	select {}
}

func TestVPPAgentKilledBetweenAddAndDel(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	runDir := shortTemp(t)
	spec := PodInterface{ContainerID: cidA, IfName: "k0", Netns: newNetns(t), Network: l2Net(), IPs: []netip.Prefix{pfx("10.9.0.9/24")}}
	arg, _ := json.Marshal(helperArgs{APISocket: v.APISocket, RunDir: runDir, Spec: spec})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(arg))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ADDED" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper agent: %q", line)
	}
	_ = cmd.Process.Kill() // kill -9 between ADD and DEL
	_ = cmd.Wait()

	// The restarted agent hands over its record of the interface.
	a := startAgent(t, v, []PodInterface{spec}, runDir)
	if ifs, _ := telcniObjects(t, a); len(ifs) != 1 || ifs[0] != spec.Tag() {
		t.Fatalf("after the agent restart VPP has %v, want %s kept", ifs, spec.Tag())
	}
	if err := a.m.Del(context.Background(), spec.Key()); err != nil {
		t.Fatal(err)
	}
	if ifs, bds := telcniObjects(t, a); len(ifs)+len(bds) != 0 {
		t.Errorf("after DEL VPP still has %v %v", ifs, bds)
	}
	if s := v.MustCLI("show memif"); strings.Contains(s, "telcni-") {
		t.Errorf("memif socket left after DEL:\n%s", s)
	}
}
