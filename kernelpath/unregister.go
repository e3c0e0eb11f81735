package kernelpath

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Deleting a network device is two steps in the kernel. Under the rtnl
// lock it closes the device (a macvlan's MAC leaves its parent), unlists it
// (its name is free), tells the protocols (its addresses, routes and
// neighbours go) and announces RTM_DELLINK to listeners. Then, after the
// lock is dropped, the deleting thread waits for an RCU barrier and for the
// last references before it frees the memory and acknowledges the request:
// 20–100 ms on these machines, and the RTM_DELLINK caller pays it. Nothing a
// pod, a runtime or a peer can observe changes in that second step, so DEL
// returns at the announcement and the rest of the call finishes in the
// background, owned by the Path (Close waits for it).

// unregister sends req, an RTM_DELLINK for the links indexes (one by its
// index, or several by group), in the netns target, and returns once the
// kernel has announced the deletion of each of them, or with the request's
// error if it fails first.
func (p *Path) unregister(target netns.NsHandle, req *nl.NetlinkRequest, indexes []int) error {
	events, err := linkEvents(target)
	if err != nil {
		// No way to listen: wait for the whole call, as before.
		p.log.Debug("unregister: no link event socket; waiting for the kernel's acknowledgement", "err", err)
		return execAt(target, req)
	}
	defer events.Close()
	sock, err := nl.GetNetlinkSocketAt(target, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	done := make(chan error, 1)
	p.bg.Add(1)
	go func() { // owned by p: ends when the kernel acknowledges; Close waits
		defer p.bg.Done()
		defer sock.Close()
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		done <- err
		// A failed request announces nothing: wake the reader. A
		// successful one's announcements were queued before its
		// acknowledgement, so the reader sees them either way.
		if err != nil {
			_ = events.SetReadDeadline(time.Now())
		}
	}()
	want := map[int32]bool{}
	for _, i := range indexes {
		want[int32(i)] = true
	}
	if err := awaitDeleted(events, want); err != nil {
		// The request failed, or the events were lost (the socket's
		// buffer overran): the request's own answer decides.
		return <-done
	}
	return nil
}

// linkEvents opens a non-blocking socket in target subscribed to link
// events, as an *os.File so that a read can be woken by a deadline.
func linkEvents(target netns.NsHandle) (*os.File, error) {
	s, err := nl.SubscribeAt(target, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	fd, err := unix.Dup(s.GetFd())
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("dup link event socket: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("link event socket: %w", err)
	}
	return os.NewFile(uintptr(fd), "rtnl-link-events"), nil
}

// awaitDeleted reads link events until every index in want was announced
// deleted. It fails when the read does (a deadline set by the sender, an
// overrun buffer).
func awaitDeleted(events *os.File, want map[int32]bool) error {
	buf := make([]byte, 32<<10)
	for len(want) > 0 {
		n, err := events.Read(buf)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse link event: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_DELLINK || len(m.Data) < unix.SizeofIfInfomsg {
				continue
			}
			delete(want, nl.DeserializeIfInfomsg(m.Data).Index)
		}
	}
	return nil
}

// deleteLink removes one link by its index, returning at the kernel's
// announcement (see unregister).
func (p *Path) deleteLink(target netns.NsHandle, index int) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	return p.unregister(target, req, []int{index})
}
