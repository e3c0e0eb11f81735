package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/cni"
	"github.com/telcni/telcni/ipam"
)

// Handler is the agent's HTTP API: CNI calls, and read-only listings for
// telcnictl and the demo.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cni.CallPath, a.serveCall)
	mux.HandleFunc("GET /v1/attachments", a.serveAttachments)
	mux.HandleFunc("GET /v1/allocations", a.serveAllocations)
	a.registerViews(mux) // GET /v1/pods/{namespace}/{name}, /v1/networks (views.go)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return mux
}

func (a *Agent) serveCall(w http.ResponseWriter, r *http.Request) {
	var call cni.Call
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<20))
	if err := dec.Decode(&call); err != nil {
		http.Error(w, "decode call: "+err.Error(), http.StatusBadRequest)
		return
	}
	start := time.Now()
	reply := a.Dispatch(r.Context(), &call)
	if reply.Error != nil {
		a.log.Warn(call.Command+" failed", "container", call.ContainerID, "ifname", call.IfName,
			"code", reply.Error.Code, "err", reply.Error.Msg, "took", time.Since(start))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

// Dispatch runs one CNI call and returns the reply the plugin prints.
func (a *Agent) Dispatch(ctx context.Context, call *cni.Call) *cni.Reply {
	start := time.Now()
	reply := a.dispatchTimed(ctx, call) // the time by command and path (metrics.go)
	var code uint
	if reply.Error != nil {
		code = reply.Error.Code
	}
	a.stats.observe(call.Command, code, time.Since(start))
	return reply
}

func (a *Agent) dispatch(ctx context.Context, call *cni.Call) *cni.Reply {
	var err error
	var result json.RawMessage
	switch call.Command {
	case "ADD":
		var rec *Attachment
		if rec, err = a.Add(ctx, call); err == nil {
			result, err = Result(rec)
		}
	case "DEL":
		err = a.Del(ctx, call)
	case "CHECK":
		err = a.Check(ctx, call)
	case "GC":
		err = a.GC(ctx, call)
	case "STATUS":
		err = a.Status(ctx, call)
	default:
		err = attach.Errorf(attach.CodeInvalidEnv, "CNI_COMMAND %q is not ADD, DEL, CHECK, GC or STATUS", call.Command)
	}
	if err != nil {
		return &cni.Reply{Error: &cni.Error{Code: attach.CodeOf(err), Msg: err.Error()}}
	}
	return &cni.Reply{Result: result}
}

// AttachmentView is one attachment as listed by the API.
type AttachmentView struct {
	*Attachment
	NetworkStatus any `json:"networkStatus"`
}

func (a *Agent) serveAttachments(w http.ResponseWriter, r *http.Request) {
	var out []AttachmentView
	err := a.forEachRecord(func(rec *Attachment) {
		out = append(out, AttachmentView{Attachment: rec, NetworkStatus: NetworkStatus(rec)})
	})
	writeJSON(w, out, err)
}

func (a *Agent) serveAllocations(w http.ResponseWriter, r *http.Request) {
	var out []ipam.Allocation
	err := a.store.View(func(tx *ipam.Tx) error { out = tx.Allocations(); return nil })
	writeJSON(w, out, err)
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Listen opens the agent's unix socket, mode 0600 (only root may ask the
// agent to change pod networking). A stale socket file is replaced, but a
// live agent on it is an error: two agents must never share a node.
func Listen(socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is listening on %s", socket)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", socket, err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", socket, err)
	}
	return l, nil
}
