// Package kubetest starts a real kube-apiserver (with etcd) on loopback for
// tests: the Kubernetes integration is accepted against the real API
// server, not fakes. Tests skip, naming what is missing, when
// kube-apiserver or etcd is not installed (`make deps-kube`), unless
// TELCNI_REQUIRE_KUBE is set: then they fail.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// AgentUser is a plain user (no groups) tests give RBAC to, to prove least
// privilege; AgentToken is its bearer token.
const (
	AgentUser  = "telcni-agent"
	AgentToken = "agent-token"
	adminToken = "admin-token"
)

// Env is one running API server.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// AgentConfig authenticates as AgentUser.
	AgentConfig *rest.Config
	// Kubeconfig is a kubeconfig file for Config (for binaries).
	Kubeconfig string
	// AgentKubeconfig is a kubeconfig file for AgentConfig.
	AgentKubeconfig string
	Clientset       kubernetes.Interface
	Dir             string
}

// Binaries returns the kube-apiserver and etcd to use, or a message saying
// what is missing.
func Binaries() (apiserver, etcd, missing string) {
	apiserver = os.Getenv("KUBE_APISERVER_BIN")
	if apiserver == "" {
		if root := moduleRoot(); root != "" {
			if p := filepath.Join(root, ".cache", "kube", "bin", "kube-apiserver"); isExec(p) {
				apiserver = p
			}
		}
	}
	if apiserver == "" {
		apiserver, _ = exec.LookPath("kube-apiserver")
	}
	etcd = os.Getenv("ETCD_BIN")
	if etcd == "" {
		etcd, _ = exec.LookPath("etcd")
	}
	switch {
	case apiserver == "":
		missing = "kube-apiserver not found: run `make deps-kube` (builds it into .cache/kube/bin) or set KUBE_APISERVER_BIN"
	case etcd == "":
		missing = "etcd not found: run `make deps-kube` (Debian's etcd-server) or set ETCD_BIN"
	}
	return apiserver, etcd, missing
}

// Require skips t (fails it with TELCNI_REQUIRE_KUBE set) when the API
// server cannot be started here.
func Require(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	apiserver, etcd, missing := Binaries()
	if missing != "" {
		if os.Getenv("TELCNI_REQUIRE_KUBE") != "" {
			t.Fatalf("TELCNI_REQUIRE_KUBE is set but %s", missing)
		}
		t.Skip(missing)
	}
	return apiserver, etcd
}

// Start runs etcd and kube-apiserver for t, stopped at cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	apiserverBin, etcdBin := Require(t)
	dir, err := os.MkdirTemp("", "kubetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	etcdURL := startEtcd(t, etcdBin, dir)
	port := freePort(t)
	writePKI(t, dir)
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,%s\n", adminToken, AgentToken, AgentUser, AgentUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"), "--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--allow-privileged=true", // as kubeadm and every CNI-hosting cluster
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	logf := filepath.Join(dir, "kube-apiserver.log")
	cmd := background(t, logf, apiserverBin, args...)
	_ = cmd
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	admin := &rest.Config{Host: host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 1000, Burst: 2000}
	agentCfg := &rest.Config{Host: host, BearerToken: AgentToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 1000, Burst: 2000}
	if err := waitReady(admin, 60*time.Second); err != nil {
		t.Fatalf("kube-apiserver not ready: %v\n%s", err, tail(logf, 30))
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Config: admin, AgentConfig: agentCfg, Clientset: cs, Dir: dir,
		Kubeconfig: writeKubeconfig(t, dir, "admin", host, adminToken), AgentKubeconfig: writeKubeconfig(t, dir, "agent", host, AgentToken)}
	return env
}

func startEtcd(t testing.TB, bin, dir string) string {
	t.Helper()
	client, peer := freePort(t), freePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(client)
	background(t, filepath.Join(dir, "etcd.log"), bin,
		"--data-dir="+filepath.Join(dir, "etcd"), "--name=kubetest",
		"--listen-client-urls="+url, "--advertise-client-urls="+url,
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(peer),
		"--initial-advertise-peer-urls=http://127.0.0.1:"+strconv.Itoa(peer),
		"--initial-cluster=kubetest=http://127.0.0.1:"+strconv.Itoa(peer),
		"--unsafe-no-fsync")
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy after 20 s: %v\n%s", err, tail(filepath.Join(dir, "etcd.log"), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// background starts a process whose output goes to logf, killed at cleanup.
func background(t testing.TB, logf, bin string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }() // owned: ends when the process does
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

func waitReady(rc *rest.Config, timeout time.Duration) error {
	tr, err := rest.TransportFor(rc)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		resp, err := hc.Get(rc.Host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("after %s: %w", timeout, last)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 and a
// service-account key pair into dir.
func writePKI(t testing.TB, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	write("ca.crt", "CERTIFICATE", caDER)
	write("serving.crt", "CERTIFICATE", der)
	write("serving.key", "EC PRIVATE KEY", keyDER)
	write("sa.key", "EC PRIVATE KEY", saDER)
	write("sa.pub", "PUBLIC KEY", saPub)
}

func writeKubeconfig(t testing.TB, dir, user, host, token string) string {
	t.Helper()
	f := filepath.Join(dir, user+".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: %s}
current-context: kubetest
`, host, filepath.Join(dir, "ca.crt"), user, token, user)
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func tail(f string, n int) string {
	b, _ := os.ReadFile(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl returns a kubectl binary (KUBECTL_BIN, .cache/kube/bin/kubectl,
// PATH), skipping t without one (failing it with TELCNI_REQUIRE_KUBE set).
func Kubectl(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("KUBECTL_BIN")
	if bin == "" {
		if root := moduleRoot(); root != "" && isExec(filepath.Join(root, ".cache", "kube", "bin", "kubectl")) {
			bin = filepath.Join(root, ".cache", "kube", "bin", "kubectl")
		}
	}
	if bin == "" {
		bin, _ = exec.LookPath("kubectl")
	}
	if bin == "" {
		msg := "kubectl not found: run `make deps-kube` (builds it into .cache/kube/bin) or set KUBECTL_BIN"
		if os.Getenv("TELCNI_REQUIRE_KUBE") != "" {
			t.Fatalf("TELCNI_REQUIRE_KUBE is set but %s", msg)
		}
		t.Skip(msg)
	}
	return bin
}
