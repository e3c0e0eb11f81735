package vppagent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/telcni/telcni/vppagent/vpptest"
)

func TestVPPCLIPassthrough(t *testing.T) {
	v := vpptest.Start(t, vpptest.Options{})
	a := startAgent(t, v, nil, shortTemp(t))
	srv := httptest.NewServer(CLIHandler(a.m))
	defer srv.Close()
	call := func(body string) (int, CLIReply) {
		t.Helper()
		resp, err := http.Post(srv.URL+CLIPath, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r CLIReply
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, r
	}
	code, r := call(`{"command":"show version"}`)
	if code != http.StatusOK || !strings.Contains(r.Output, "vpp v25.10") {
		t.Fatalf("show version: %d %+v", code, r)
	}
	if code, r := call(`{"command":""}`); code != http.StatusBadRequest || r.Error == "" {
		t.Errorf("empty command: %d %+v", code, r)
	}
	a.stop() // the agent's VPP connection is gone: 503 with the reason
	if code, r := call(`{"command":"show version"}`); code != http.StatusServiceUnavailable || r.Error == "" {
		t.Errorf("with the connection down: %d %+v", code, r)
	}
}
