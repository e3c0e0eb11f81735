package vppagent

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// CLIPath is the agent endpoint that passes a command to VPP's CLI, as
// vppctl does, for telcnictl. It is served on the agent's root-only socket.
const CLIPath = "/v1/vpp/cli"

// CLIRequest is the body of a CLI call.
type CLIRequest struct {
	Command string `json:"command"`
}

// CLIReply is VPP's answer, or why there is none.
type CLIReply struct {
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// CLIHandler serves CLIPath with m's VPP connection. A VPP that is down
// answers 503 with the reason, so telcnictl can tell it from a bad command.
func CLIHandler(m *Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CLIRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || strings.TrimSpace(req.Command) == "" {
			writeCLI(w, http.StatusBadRequest, CLIReply{Error: "body must be {\"command\": \"<vpp cli command>\"}"})
			return
		}
		if err := m.Ready(); err != nil {
			writeCLI(w, http.StatusServiceUnavailable, CLIReply{Error: err.Error()})
			return
		}
		out, err := m.CLI(r.Context(), req.Command)
		if err != nil {
			writeCLI(w, http.StatusBadGateway, CLIReply{Output: out, Error: err.Error()})
			return
		}
		writeCLI(w, http.StatusOK, CLIReply{Output: out})
	})
}

func writeCLI(w http.ResponseWriter, status int, reply CLIReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(reply)
}
