package memif

import (
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// region is one shared memory region: a memfd and its mapping.
type region struct {
	fd  int
	mem []byte
}

// newRegion creates a memfd of size bytes, sealed against shrinking so that
// the peer can map it without fearing SIGBUS, and maps it.
func newRegion(name string, size uint64) (*region, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ftruncate memfd to %d: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap region: %w", err)
	}
	return &region{fd: fd, mem: mem}, nil
}

// mapPeerRegion maps a region the peer sent. It takes ownership of fd
// (closing it on error). The size must fit in the file, and unless
// allowUnsealed the file must be sealed against shrinking: otherwise the
// peer could truncate it later and fault us.
func mapPeerRegion(fd int, size uint64, allowUnsealed bool) (*region, error) {
	fail := func(err error) (*region, error) {
		unix.Close(fd)
		return nil, err
	}
	if size == 0 || size > math.MaxInt32*4 {
		return fail(fmt.Errorf("region size %d out of range", size))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(fmt.Errorf("fstat region fd: %w", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail(fmt.Errorf("region fd is not a regular file (mode %#o)", st.Mode))
	}
	if uint64(st.Size) < size {
		return fail(fmt.Errorf("region size %d larger than its file (%d bytes)", size, st.Size))
	}
	if !allowUnsealed {
		seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		if err != nil || seals&unix.F_SEAL_SHRINK == 0 {
			return fail(fmt.Errorf("region memfd not sealed against shrinking (seals %#x, err %v); set AllowUnsealed for trusted peers", seals, err))
		}
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap peer region: %w", err))
	}
	return &region{fd: fd, mem: mem}, nil
}

func (r *region) close() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
