package kubelet

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// No image registry is reachable: the pause image and the test image are
// written here as one OCI image layout tarball (oci-layout, index.json,
// blobs/sha256/...) and imported with `ctr -n k8s.io images import`.
// Both images have the same single layer: a static busybox and the applets
// the test calls, as symlinks.

const (
	pauseImage   = "telcni.test/pause:1"
	busyboxImage = "telcni.test/busybox:1"
)

// ociDescriptor is an OCI content descriptor.
type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    map[string]string `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociLayout struct {
	blobs map[string][]byte // digest -> content
	order []string
}

func (l *ociLayout) add(mediaType string, data []byte) ociDescriptor {
	sum := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(sum[:])
	if _, ok := l.blobs[d]; !ok {
		l.blobs[d] = data
		l.order = append(l.order, d)
	}
	return ociDescriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// busyboxLayer is an uncompressed tar layer holding busybox (the
// busybox-static binary at path) with applet symlinks and the usual
// directories.
func busyboxLayer(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/", "run/", "root/", "var/", "var/tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" || d == "var/tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, bin},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	for _, applet := range []string{"sh", "ip", "ping", "sleep", "cat", "ls", "echo", "true", "hostname", "nc", "grep"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeImages writes the OCI layout tarball holding pauseImage (runs
// `sleep` forever: the CRI kills a sandbox with SIGKILL) and busyboxImage
// (runs the pod's command; default sh) to out.
func writeImages(busybox, out string) error {
	layer, err := busyboxLayer(busybox)
	if err != nil {
		return err
	}
	l := &ociLayout{blobs: map[string][]byte{}}
	layerDesc := l.add("application/vnd.oci.image.layer.v1.tar", layer)
	var manifests []ociDescriptor
	for _, img := range []struct {
		name       string
		entrypoint []string
		cmd        []string
	}{
		{pauseImage, []string{"/bin/sleep", "2147483647"}, nil},
		{busyboxImage, nil, []string{"/bin/sh"}},
	} {
		cfg, err := json.Marshal(map[string]any{
			"architecture": "amd64",
			"os":           "linux",
			"created":      "1970-01-01T00:00:00Z",
			"config": map[string]any{
				"Env":        []string{"PATH=/bin"},
				"Entrypoint": img.entrypoint,
				"Cmd":        img.cmd,
				"WorkingDir": "/",
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
		})
		if err != nil {
			return err
		}
		cfgDesc := l.add("application/vnd.oci.image.config.v1+json", cfg)
		man, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        cfgDesc,
			"layers":        []ociDescriptor{layerDesc},
		})
		if err != nil {
			return err
		}
		d := l.add("application/vnd.oci.image.manifest.v1+json", man)
		d.Platform = map[string]string{"architecture": "amd64", "os": "linux"}
		d.Annotations = map[string]string{
			"io.containerd.image.name":          img.name,
			"org.opencontainers.image.ref.name": img.name[len(img.name)-1:],
		}
		manifests = append(manifests, d)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     manifests,
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, d := range l.order {
		if err := put("blobs/sha256/"+d[len("sha256:"):], l.blobs[d]); err != nil {
			return err
		}
	}
	if err := put("index.json", index); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image tarball: %w", err)
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
