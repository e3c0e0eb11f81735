// Package kubetest starts a real kube-apiserver (with etcd) on loopback for
// tests: the Kubernetes integration is accepted against the real API
// server, not fakes. Tests skip, naming what is missing, when
// kube-apiserver or etcd is not installed (`make deps-kube`), unless
// TELCNI_REQUIRE_KUBE=1: then they fail.
//
// Start gives a test its own API server (stopped at the test's cleanup);
// Shared gives every test of the binary one API server, which the
// package's TestMain stops with Stop after m.Run; tests sharing it work in
// their own namespace (Env.Namespace).
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// ReadyTimeout bounds the wait for the API server's /readyz.
const ReadyTimeout = 60 * time.Second

// Env is one running API server.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// AgentConfig authenticates as AgentUser, who has no RBAC until a test
	// grants it some.
	AgentConfig *rest.Config
	// Kubeconfig is a kubeconfig file for Config (for binaries).
	Kubeconfig string
	// AgentKubeconfig is a kubeconfig file for AgentConfig.
	AgentKubeconfig string
	// Clientset uses Config.
	Clientset kubernetes.Interface
	// Dir holds the certificates, kubeconfigs and the processes' logs
	// (etcd.log, kube-apiserver.log); removed when the server stops.
	Dir string
}

// Binaries returns the kube-apiserver and etcd to use, or a message saying
// what is missing. kube-apiserver: KUBE_APISERVER_BIN, .cache/kube/bin in
// the module root, PATH; etcd: ETCD_BIN, /usr/bin/etcd, PATH.
func Binaries() (apiserver, etcd, missing string) {
	apiserver = os.Getenv("KUBE_APISERVER_BIN")
	if apiserver == "" {
		if root := moduleRoot(); root != "" && isExec(filepath.Join(root, ".cache", "kube", "bin", "kube-apiserver")) {
			apiserver = filepath.Join(root, ".cache", "kube", "bin", "kube-apiserver")
		}
	}
	if apiserver == "" {
		apiserver, _ = exec.LookPath("kube-apiserver")
	}
	etcd = os.Getenv("ETCD_BIN")
	if etcd == "" && isExec("/usr/bin/etcd") {
		etcd = "/usr/bin/etcd"
	}
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

// Require skips t (fails it with TELCNI_REQUIRE_KUBE=1) when the API
// server cannot be started here.
func Require(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	apiserver, etcd, missing := Binaries()
	if missing != "" {
		if os.Getenv("TELCNI_REQUIRE_KUBE") == "1" {
			t.Fatalf("TELCNI_REQUIRE_KUBE=1 but %s", missing)
		}
		t.Skip(missing)
	}
	return apiserver, etcd
}

// Start runs etcd and kube-apiserver for t; t's cleanup stops them and
// removes their directory.
func Start(t testing.TB) *Env {
	t.Helper()
	apiserverBin, etcdBin := Require(t)
	env, c, err := launch(apiserverBin, etcdBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	t.Logf("kube-apiserver ready in %s (%s)", c.ready.Round(10*time.Millisecond), env.Config.Host)
	return env
}

var shared struct {
	once sync.Once
	mu   sync.Mutex
	env  *Env
	c    *cluster
	err  error
}

// Shared returns the test binary's one API server, started by its first
// caller. The package's TestMain must call Stop after m.Run:
//
//	func TestMain(m *testing.M) { code := m.Run(); kubetest.Stop(); os.Exit(code) }
//
// (without it the processes die with the test binary, but their directory
// stays behind). Tests sharing it should work in their own namespace.
func Shared(t testing.TB) *Env {
	t.Helper()
	apiserverBin, etcdBin := Require(t)
	started := false
	shared.once.Do(func() {
		env, c, err := launch(apiserverBin, etcdBin)
		shared.mu.Lock()
		shared.env, shared.c, shared.err = env, c, err
		shared.mu.Unlock()
		started = err == nil
	})
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	if shared.c == nil {
		t.Fatal("kubetest.Shared called after kubetest.Stop")
	}
	if started {
		t.Logf("shared kube-apiserver ready in %s (%s)", shared.c.ready.Round(10*time.Millisecond), shared.env.Config.Host)
	}
	return shared.env
}

// Stop stops the API server Shared started, if any.
func Stop() {
	shared.mu.Lock()
	c := shared.c
	shared.c = nil
	shared.mu.Unlock()
	if c != nil {
		c.stop()
	}
}

// Namespace creates a namespace for t (named after it) and deletes it at
// t's cleanup. (No namespace controller runs: a deleted namespace stays
// Terminating, which is enough to keep tests apart.)
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	prefix := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	ns, err := e.Clientset.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = e.Clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// cluster is a running etcd and kube-apiserver.
type cluster struct {
	dir   string
	procs []*proc // in start order
	ready time.Duration
	once  sync.Once
}

// stop kills the processes (newest first; their data is thrown away) and
// removes the directory.
func (c *cluster) stop() {
	c.once.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].kill()
		}
		os.RemoveAll(c.dir)
	})
}

// launch starts etcd and kube-apiserver and waits until the API server is
// ready. On failure it stops what it started and the error carries the
// tail of the failing process's log.
func launch(apiserverBin, etcdBin string) (_ *Env, _ *cluster, err error) {
	dir, err := os.MkdirTemp("", "kubetest")
	if err != nil {
		return nil, nil, err
	}
	c := &cluster{dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	t0 := time.Now()

	etcdURL, err := c.startEtcd(etcdBin)
	if err != nil {
		return nil, nil, err
	}
	ca, err := writePKI(dir)
	if err != nil {
		return nil, nil, err
	}
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,%s\n", adminToken, AgentToken, AgentUser, AgentUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, err
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
	api, err := c.start(filepath.Join(dir, "kube-apiserver.log"), apiserverBin, args...)
	if err != nil {
		return nil, nil, err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	admin := &rest.Config{Host: host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 1000, Burst: 2000}
	agent := &rest.Config{Host: host, BearerToken: AgentToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 1000, Burst: 2000}
	if err := waitReady(admin, api, ReadyTimeout); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver (%s) not ready: %v\n--- tail of %s:\n%s", apiserverBin, err, api.log, tail(api.log, 40))
	}
	c.ready = time.Since(t0)
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, nil, err
	}
	env := &Env{Config: admin, AgentConfig: agent, Clientset: cs, Dir: dir}
	if env.Kubeconfig, err = writeKubeconfig(dir, "admin", host, adminToken); err != nil {
		return nil, nil, err
	}
	if env.AgentKubeconfig, err = writeKubeconfig(dir, "agent", host, AgentToken); err != nil {
		return nil, nil, err
	}
	return env, c, nil
}

func (c *cluster) startEtcd(bin string) (string, error) {
	client, err := freePort()
	if err != nil {
		return "", err
	}
	peer, err := freePort()
	if err != nil {
		return "", err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := c.start(filepath.Join(c.dir, "etcd.log"), bin,
		"--data-dir="+filepath.Join(c.dir, "etcd"), "--name=kubetest",
		"--listen-client-urls="+url, "--advertise-client-urls="+url,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync", "--logger=zap")
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, nil
			}
			err = fmt.Errorf("/health: %s", resp.Status)
		}
		if p.exited() || time.Now().After(deadline) {
			return "", fmt.Errorf("etcd (%s) not healthy (exited: %v): %v\n--- tail of %s:\n%s", bin, p.exited(), err, p.log, tail(p.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is a child process whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// spawn starts processes from one goroutine locked to its thread for the
// life of the test binary: the children get SIGKILL when their parent
// thread dies (Pdeathsig), so they must not be forked from a thread the Go
// runtime could end (a goroutine exiting while locked, as netns tests do,
// ends its thread), yet they die with a test binary killed on timeout.
var spawn = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for f := range ch {
			f()
		}
	}()
	return ch
})

func (c *cluster) start(logf, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logf)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	spawn() <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }() // ends when the process does
	c.procs = append(c.procs, p)
	return p, nil
}

func waitReady(rc *rest.Config, p *proc, timeout time.Duration) error {
	tr, err := rest.TransportFor(rc)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := errors.New("no answer yet")
	for ctx.Err() == nil {
		if p.exited() {
			return fmt.Errorf("it exited: %v", p.cmd.ProcessState)
		}
		resp, err := hc.Get(rc.Host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("after %s: %w", timeout, last)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 and a
// service-account key pair into dir; it returns the CA certificate (PEM).
func writePKI(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"ca.crt", caPEM},
		{"serving.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{"serving.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})},
		{"sa.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})},
		{"sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub})},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

func writeKubeconfig(dir, user, host, token string) (string, error) {
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
	return f, os.WriteFile(f, []byte(cfg), 0o600)
}

// moduleRoot is the directory holding go.mod, walking up from the working
// directory ("" if none).
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
// PATH), skipping t without one (failing it with TELCNI_REQUIRE_KUBE=1).
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
		if os.Getenv("TELCNI_REQUIRE_KUBE") == "1" {
			t.Fatalf("TELCNI_REQUIRE_KUBE=1 but %s", msg)
		}
		t.Skip(msg)
	}
	return bin
}

// CreateNamespaces creates namespaces with these names (tests that need
// fixed names, as NADs and policies name them).
func (e *Env) CreateNamespaces(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := e.Clientset.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", n, err)
		}
	}
}
