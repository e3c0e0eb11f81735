package vppagent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// reconcile makes VPP match the records: every recorded interface exists
// (after a VPP restart, everything is re-created), and every telcni-tagged
// object nobody owns is removed (after an agent crash or a lost DEL). It
// does nothing before Retain: at an agent's start the connect may come
// first, and every object would look unowned.
func (m *Manager) reconcile(ctx context.Context, v *vpp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.retained {
		m.log.Info("VPP connected; reconcile waits for the agent's records")
		return nil
	}
	recs := m.recs.list()
	st, err := m.observe(ctx, v)
	if err != nil {
		return err
	}
	var errs []error
	created := 0
	for i := range recs {
		r := recs[i]
		if err := m.ensureNetwork(ctx, v, st, &r.Spec.Network); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Spec.Key(), err))
			continue
		}
		_, existed := st.byTag[r.Spec.Tag()]
		nr, err := m.ensurePod(ctx, v, st, r.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Spec.Key(), err))
			continue
		}
		if !existed {
			created++
		} else if err := m.configurePod(ctx, v, st, nr); err != nil {
			// It exists: re-apply its configuration (idempotent in VPP), so
			// that drift (left a bridge domain, admin down, a route gone)
			// is repaired too.
			errs = append(errs, fmt.Errorf("%s: %w", r.Spec.Key(), err))
		}
		if nr.SwIfIndex != r.SwIfIndex || nr.Socket != r.Socket {
			m.recs.put(*nr)
		}
	}
	if err := m.collect(ctx, v, recs); err != nil {
		errs = append(errs, err)
	}
	m.log.Info("reconciled VPP", "records", len(recs), "recreated", created, "errors", len(errs))
	return errors.Join(errs...)
}

// collect deletes telcni-tagged interfaces, bridge domains and memif
// sockets that none of recs owns: pod interfaces first, then the network
// objects they hung off, so that nothing is deleted while in use.
func (m *Manager) collect(ctx context.Context, v *vpp, recs []Record) error {
	want := map[string]bool{}
	wantBD := map[uint32]bool{}
	wantSock := map[string]bool{}
	for _, r := range recs {
		n := &r.Spec.Network
		want[r.Spec.Tag()] = true
		want[netTag(n.Name)] = true
		if n.Uplink != nil {
			want[uplinkTag(n.Uplink)] = true
		}
		if !n.L3 {
			wantBD[n.BridgeDomain()] = true
		}
		if n.Kind == KindMemif {
			wantSock[r.Socket] = true
		}
	}
	ifs, err := v.dumpInterfaces(ctx)
	if err != nil {
		return err
	}
	// Order: pod interfaces (rank 0), sub-interfaces and loopbacks (1),
	// uplinks (2).
	rank := func(i swIf) int {
		switch {
		case strings.HasPrefix(i.Tag, tagPrefix+"uplink:"):
			return 2
		case strings.HasPrefix(i.Tag, tagPrefix+"net:"):
			return 1
		}
		return 0
	}
	var orphans []swIf
	for _, i := range ifs {
		if isOurs(i.Tag) && !want[i.Tag] {
			orphans = append(orphans, i)
		}
	}
	sort.SliceStable(orphans, func(a, b int) bool { return rank(orphans[a]) < rank(orphans[b]) })
	var errs []error
	for _, i := range orphans {
		m.log.Info("removing unowned VPP interface", "swIfIndex", i.Index, "name", i.Name, "tag", i.Tag)
		if err := m.deleteIf(ctx, v, i); err != nil {
			errs = append(errs, err)
		}
	}
	defer func() {
		// Last, once VPP let go of their interfaces: the VFs of networks
		// nobody uses go back to the pool.
		if err := m.returnUplinks(ctx, recs); err != nil {
			m.log.Warn("uplink VFs not returned to the pool; retried at the next reconcile", "err", err)
		}
	}()
	if err := m.removeOrphanACLs(ctx, v, want); err != nil {
		errs = append(errs, err)
	}
	bds, err := v.bridgeDomains(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for id, tag := range bds {
		if isOurs(tag) && !wantBD[id] {
			m.log.Info("removing unowned bridge domain", "bd", id, "tag", tag)
			// Interfaces telcni does not own (an uplink from startup.conf)
			// leave the bridge domain first; VPP refuses to delete it
			// with members.
			members, err := v.bdMembers(ctx, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, idx := range members {
				if err := v.setBridge(ctx, idx, id, false); err != nil {
					errs = append(errs, err)
				}
			}
			if err := v.bridgeDomainDel(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	socks, err := v.memifSockets(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var onSocket map[uint32]uint32
	for id, f := range socks {
		if id == 0 || !m.ownsSocket(f) {
			continue
		}
		used := false
		for s := range wantSock {
			if socketMatches(f, s) {
				used = true
			}
		}
		if used {
			continue
		}
		// An interface on a socket of ours that nobody uses is ours too,
		// tagged or not: an agent killed between creating a memif and
		// tagging it leaves one that only its socket names. VPP refuses
		// to delete a socket in use.
		if onSocket == nil {
			if onSocket, err = v.memifSocketOf(ctx); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		for idx, sid := range onSocket {
			if sid == id {
				m.log.Info("removing memif interface on an unowned socket", "swIfIndex", idx, "socket", f)
				if err := v.memifDelete(ctx, idx); err != nil {
					errs = append(errs, err)
				}
			}
		}
		m.log.Info("removing unowned memif socket", "id", id, "file", f)
		if err := v.memifSocketDel(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownsSocket recognises socket names telcni makes (see memifSocket).
func (m *Manager) ownsSocket(f string) bool {
	return strings.HasPrefix(f, "abstract:telcni-") || strings.HasPrefix(f, m.runDir+"/memif/")
}
