package memif

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostileRings: one side scribbles on the shared rings; the other side's
// burst calls must report ErrPeerMisbehaved, tear the connection down with a
// reason, and not touch memory outside the regions.
func TestHostileRings(t *testing.T) {
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048)}
	for _, tc := range []struct {
		name    string
		corrupt func(srv, cli *Conn)
		victim  func(srv, cli *Conn) (*Conn, error)
	}{
		{"client head far ahead", func(srv, cli *Conn) { cli.tx[0].r.setHead(5000) },
			func(srv, cli *Conn) (*Conn, error) { _, err := srv.RxBurst(0, bufs); return srv, err }},
		{"descriptor region out of range", func(srv, cli *Conn) {
			cli.TxBurst(0, [][]byte{frame(1, 64)})
			cli.tx[0].r.descs[0].region = 9
		}, func(srv, cli *Conn) (*Conn, error) { _, err := srv.RxBurst(0, bufs); return srv, err }},
		{"descriptor past region end", func(srv, cli *Conn) {
			cli.TxBurst(0, [][]byte{frame(1, 64)})
			cli.tx[0].r.descs[0].offset = 0xfffffff0
		}, func(srv, cli *Conn) (*Conn, error) { _, err := srv.RxBurst(0, bufs); return srv, err }},
		{"server tail beyond buffers", func(srv, cli *Conn) { srv.tx[0].r.setTail(3000) },
			func(srv, cli *Conn) (*Conn, error) { _, err := cli.RxBurst(0, bufs); return cli, err }},
		{"server length beyond buffer", func(srv, cli *Conn) {
			srv.TxBurst(0, [][]byte{frame(1, 64)})
			srv.tx[0].r.descs[0].length = 1 << 20
		}, func(srv, cli *Conn) (*Conn, error) { _, err := cli.RxBurst(0, bufs); return cli, err }},
		{"client offers buffer outside region", func(srv, cli *Conn) {
			cli.rx[0].r.descs[0].offset = 0x7ffffff0
		}, func(srv, cli *Conn) (*Conn, error) {
			_, err := srv.TxBurst(0, [][]byte{frame(1, 64)})
			return srv, err
		}},
		{"client tail beyond head", func(srv, cli *Conn) { srv.rx[0].r.setTail(0); cli.tx[0].head = 0; cli.tx[0].r.setTail(4000) },
			func(srv, cli *Conn) (*Conn, error) { _, err := cli.TxBurst(0, [][]byte{frame(1, 64)}); return cli, err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := pair(t, Config{Socket: sockPath(t), Logger: quietLog}, Config{Logger: quietLog})
			tc.corrupt(srv, cli)
			victim, err := tc.victim(srv, cli)
			if !errors.Is(err, ErrPeerMisbehaved) {
				t.Fatalf("err %v, want ErrPeerMisbehaved", err)
			}
			select {
			case <-victim.Done():
			case <-time.After(time.Second):
				t.Fatal("connection not torn down")
			}
			if !strings.Contains(victim.Err().Error(), "invalid") {
				t.Fatalf("reason: %v", victim.Err())
			}
		})
	}
}

// TestHostileServer: a fake server breaks the handshake; Dial must fail
// with the reason, not hang or panic.
func TestHostileServer(t *testing.T) {
	needMemfd(t)
	for _, tc := range []struct {
		name  string
		hello func() []byte
		want  string
	}{
		{"old version", func() []byte {
			var b [msgSize]byte
			(&msg{typ: msgHello, minVer: 0x100, maxVer: 0x100, maxLog2Ring: 10}).encode(&b)
			return b[:]
		}, "versions"},
		{"garbage", func() []byte { return []byte("hello?") }, "malformed"},
		{"ack instead of hello", func() []byte {
			var b [msgSize]byte
			(&msg{typ: msgAck}).encode(&b)
			return b[:]
		}, "want HELLO"},
		{"no ring size", func() []byte {
			var b [msgSize]byte
			(&msg{typ: msgHello, minVer: protoVer, maxVer: protoVer}).encode(&b)
			return b[:]
		}, "ring size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "s")
			ul, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			defer ul.Close()
			go func() {
				c, err := ul.AcceptUnix()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write(tc.hello())
				var b [msgSize]byte
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Read(b[:]) // the client's DISCONNECT
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, Config{Socket: sock, Logger: quietLog})
			if err == nil {
				c.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}
