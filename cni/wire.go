// Package cni is the wire between the thin telcni plugin binary and the
// node agent: the plugin forwards each CNI call, as it received it, over
// HTTP+JSON on a unix socket, and prints what the agent answers.
package cni

import (
	"encoding/json"
)

// DefaultSocket is where the agent listens unless configured otherwise.
const DefaultSocket = "/run/telcni/agent.sock"

// CallPath is the agent's HTTP endpoint for CNI calls.
const CallPath = "/v1/cni"

// Call is one CNI invocation: the CNI_* environment and the stdin config.
type Call struct {
	Command     string          `json:"command"` // ADD, DEL, CHECK, GC, STATUS
	ContainerID string          `json:"containerID,omitempty"`
	Netns       string          `json:"netns,omitempty"`
	IfName      string          `json:"ifName,omitempty"`
	Args        string          `json:"args,omitempty"` // CNI_ARGS
	Path        string          `json:"path,omitempty"` // CNI_PATH
	Config      json.RawMessage `json:"config"`         // stdin, verbatim
}

// Reply is the agent's answer: a CNI result (ADD) or a CNI error.
type Reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a CNI error as the spec defines it.
type Error struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Details == "" {
		return e.Msg
	}
	return e.Msg + ": " + e.Details
}

// PluginConf is the part of the stdin config the plugin itself reads: only
// where the agent is. Everything else is the agent's business.
type PluginConf struct {
	CNIVersion  string `json:"cniVersion"`
	AgentSocket string `json:"agentSocket,omitempty"`
}

// Socket returns the configured socket or the default.
func (c *PluginConf) Socket() string {
	if c.AgentSocket != "" {
		return c.AgentSocket
	}
	return DefaultSocket
}
