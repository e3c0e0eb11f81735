package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/telcni/telcni/api"
	"github.com/telcni/telcni/attach"
	"github.com/telcni/telcni/policy"
)

// PolicyTarget is one pod interface of this node that policies may select.
// Attachment and IfName identify it to the caller; kube only compares
// them.
type PolicyTarget struct {
	Attachment string
	IfName     string
	// Generation changes when the interface is made again: its rules are
	// then applied again even if they did not change.
	Generation string
	Pod        attach.Pod
	Network    string // network key, as network-status names it
}

func (t PolicyTarget) id() string { return t.Attachment + " " + t.IfName + " " + t.Generation }

// PolicyConfig connects the policy controller to the node's interfaces.
type PolicyConfig struct {
	// Targets lists the node's pod interfaces (the agent's ready records).
	Targets func(ctx context.Context) ([]PolicyTarget, error)
	// Apply enforces r on one interface (the interface's path does it).
	Apply func(ctx context.Context, t PolicyTarget, r policy.Rules) error
	// NetworkKey resolves a policy-for entry; nil: "name" is the policy's
	// namespace's network. See Cluster.PolicyNetworkKey.
	NetworkKey func(ns, ref string) string
	// Debounce gathers a burst of API changes into one pass (0: 150 ms).
	Debounce time.Duration
	// Resync recomputes even without API changes (0: 30 s): the safety
	// net; ADD and DEL poke the controller (Poke), and a pod's
	// network-status written after its ADD is an API change.
	Resync time.Duration
	// RetryAfter is the wait before a failed application is tried again
	// (0: 1 s).
	RetryAfter time.Duration
	// Parallel bounds the interfaces applied at once (0: 16).
	Parallel int
	// TargetPorts reads a local pod's container ports, which an ingress
	// rule's named port refers to; nil: named ports allow nothing. See
	// Cluster.PodPorts (the node's pods are cached in full).
	TargetPorts func(ctx context.Context, pod attach.Pod) ([]policy.ContainerPort, error)
	Log         *slog.Logger
}

// PolicyController enforces MultiNetworkPolicies on this node's pod
// interfaces: it watches policies, every pod's labels and network-status
// (metadata only) and namespaces' labels; after a change it recomputes
// every local interface and applies only the rules that changed. Its first
// pass applies everything: after an agent restart the kernel already has
// the old rules and the pass replaces them with the current ones.
type PolicyController struct {
	cfg  PolicyConfig
	log  *slog.Logger
	disc discovery.DiscoveryInterface

	dynFactory  dynamicinformer.DynamicSharedInformerFactory
	metaFactory metadatainformer.SharedInformerFactory // namespaces
	podFactory  metadatainformer.SharedInformerFactory // pods not finished
	policies    cache.SharedIndexInformer
	pods        cache.SharedIndexInformer
	namespaces  cache.SharedIndexInformer

	poke chan struct{}
	// state: starting, no CRD, synced; ready is closed at the first
	// state other than starting (RulesFor waits for it).
	state     atomic.Int32
	waitedOut atomic.Bool // an ADD's wait for ready ran out (awaitReady)
	readyWait time.Duration
	ready     chan struct{}
	readyOnce sync.Once
	meta      metadata.Interface

	// inMu guards parsed and view: the run loop and RulesFor (ADDs) both
	// read the caches.
	inMu sync.Mutex
	// view is the compilation's input, kept until an informer event
	// changes the caches (nil: build it again): an ADD asks for rules on
	// its hot path, and building it converts every policy and lists every
	// pod of the cluster.
	view *policy.Input

	mu      sync.Mutex
	changed time.Time // first change not yet applied (zero: none)

	// Owned by the run loop.
	applied map[string]policy.Rules // by PolicyTarget.id
	notes   map[string]bool

	parsed map[string]parsedPod // by namespace/name, under inMu
}

type parsedPod struct {
	rv  string
	pod *policy.Pod
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// NewPolicyController connects to the API server of rc. Run starts it.
func NewPolicyController(rc *rest.Config, cfg PolicyConfig) (*PolicyController, error) {
	if cfg.Targets == nil || cfg.Apply == nil {
		return nil, fmt.Errorf("policy controller: Targets and Apply are required")
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 150 * time.Millisecond
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 16
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("policy controller: dynamic client: %w", err)
	}
	meta, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("policy controller: metadata client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("policy controller: discovery client: %w", err)
	}
	c := &PolicyController{cfg: cfg, disc: disc, log: cfg.Log.With("component", "policy"), poke: make(chan struct{}, 1),
		applied: map[string]policy.Rules{}, parsed: map[string]parsedPod{}, notes: map[string]bool{},
		ready: make(chan struct{}), meta: meta, readyWait: readyWait}
	c.dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	c.metaFactory = metadatainformer.NewSharedInformerFactory(meta, 0)
	// Pods that finished are no peers: their addresses may be another
	// pod's already. Metadata has no phase, so the API server filters: a
	// pod that reaches Succeeded or Failed leaves the watch as deleted.
	c.podFactory = metadatainformer.NewFilteredSharedInformerFactory(meta, 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = "status.phase!=Succeeded,status.phase!=Failed"
	})
	c.policies = c.dynFactory.ForResource(policy.GVR).Informer()
	c.pods = c.podFactory.ForResource(podsGVR).Informer()
	c.namespaces = c.metaFactory.ForResource(namespacesGVR).Informer()
	// Pods of the whole cluster are cached: keep only what policies read.
	if err := c.pods.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("policy controller: pod transform: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{c.policies, c.pods, c.namespaces} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.changedCaches() },
			UpdateFunc: func(old, cur any) { c.onUpdate(old, cur) },
			DeleteFunc: func(any) { c.changedCaches() },
		}); err != nil {
			return nil, fmt.Errorf("policy controller: event handler: %w", err)
		}
	}
	return c, nil
}

// slimPod drops from a cached pod what no policy reads: managed fields,
// and every annotation but network-status.
func slimPod(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a tombstone: left as it is
	}
	m.ManagedFields = nil
	if st, ok := m.Annotations[api.NetworkStatusAnnotation]; ok {
		m.Annotations = map[string]string{api.NetworkStatusAnnotation: st}
	} else {
		m.Annotations = nil
	}
	return m, nil
}

// onUpdate pokes for changes a policy can see: a pod's status heartbeat
// or a policy's unchanged resync is no reason to recompute.
func (c *PolicyController) onUpdate(old, cur any) {
	o, ok1 := old.(metav1.Object)
	n, ok2 := cur.(metav1.Object)
	if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
		return
	}
	if om, ok := old.(*metav1.PartialObjectMetadata); ok {
		nm, _ := cur.(*metav1.PartialObjectMetadata)
		if nm != nil && maps.Equal(om.Labels, nm.Labels) && maps.Equal(om.Annotations, nm.Annotations) {
			return
		}
	}
	c.changedCaches()
}

// changedCaches drops the cached view and asks for a pass.
func (c *PolicyController) changedCaches() {
	c.inMu.Lock()
	c.view = nil
	c.inMu.Unlock()
	c.Poke()
}

// currentInput is the compilation's view of the caches, built again only
// after they changed. It is shared: nobody may modify it.
func (c *PolicyController) currentInput() *policy.Input {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if c.view == nil {
		c.view = c.input()
	}
	return c.view
}

// Poke asks for a pass soon (after the debounce): the agent calls it when
// it attached or detached interfaces.
func (c *PolicyController) Poke() {
	c.mu.Lock()
	if c.changed.IsZero() {
		c.changed = time.Now()
	}
	c.mu.Unlock()
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Run watches and enforces until ctx ends. It returns an error only when
// the caches never sync.
func (c *PolicyController) Run(ctx context.Context) error {
	if !c.waitCRD(ctx) {
		return nil
	}
	c.dynFactory.Start(ctx.Done())
	c.metaFactory.Start(ctx.Done())
	c.podFactory.Start(ctx.Done())
	defer c.dynFactory.Shutdown()
	defer c.metaFactory.Shutdown()
	defer c.podFactory.Shutdown()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	synced := cache.WaitForCacheSync(wctx.Done(), c.policies.HasSynced, c.pods.HasSynced, c.namespaces.HasSynced)
	cancel()
	if !synced {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("policy controller: caches of MultiNetworkPolicies, pods and namespaces did not sync within a minute")
	}
	c.setState(stateSynced)
	c.log.Info("policy controller started")
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	c.Poke() // the first pass applies every interface
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
		case <-retry.C:
		case <-c.poke:
			// Changes come in bursts (a deployment's pods, a policy and its
			// namespace): one pass for the burst.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.cfg.Debounce):
			}
		}
		if c.pass(ctx) {
			retry.Reset(c.cfg.RetryAfter)
		}
	}
}

// waitCRD waits until the API server serves MultiNetworkPolicies: a
// cluster without the CRD has no policies (the informer would only log
// failed lists). False: ctx ended first.
func (c *PolicyController) waitCRD(ctx context.Context) bool {
	const every = time.Minute
	for warned := false; ; {
		res, err := c.disc.ServerResourcesForGroupVersion(policy.GVR.GroupVersion().String())
		if err == nil && slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Name == policy.GVR.Resource }) {
			c.setState(stateStarting) // served now: wait for the caches
			return true
		}
		if apierrors.IsNotFound(err) || err == nil {
			c.setState(stateNoCRD) // the API server answered: no policies exist
		}
		if !warned {
			c.log.Warn("MultiNetworkPolicies are not served (CRD multi-networkpolicies.k8s.cni.cncf.io not installed?): none enforced; looking again every minute",
				"err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(every):
		}
	}
}

// pass recomputes every local interface and applies what changed. It
// reports whether something failed and must be tried again.
func (c *PolicyController) pass(ctx context.Context) (failed bool) {
	c.mu.Lock()
	since := c.changed
	c.changed = time.Time{}
	c.mu.Unlock()
	start := time.Now()
	targets, err := c.cfg.Targets(ctx)
	if err != nil {
		c.log.Warn("policy: list the node's interfaces", "err", err)
		return true
	}
	in := c.currentInput()
	x := policy.NewIndex(in)
	c.log.Debug("policy pass", "policies", len(in.Policies), "pods", len(in.Pods), "namespaces", len(in.Namespaces), "targets", len(targets))
	pods := map[string]*policy.Pod{}
	for _, p := range in.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	seen := map[string]bool{}
	var jobs []applyJob
	for _, t := range targets {
		if t.Pod.Name == "" {
			continue // not a Kubernetes pod (runtime without one): no policy selects it
		}
		pod := pods[t.Pod.Namespace+"/"+t.Pod.Name]
		if pod == nil || (t.Pod.UID != "" && pod.UID != t.Pod.UID) {
			// Not in the cache yet (just created, or replaced under its
			// name): its informer event comes and triggers another pass.
			continue
		}
		ports, err := c.targetPorts(ctx, x, t.Pod)
		if err != nil {
			c.log.Warn("policy: the pod's container ports (for named ports) cannot be read; retrying", "pod", t.Pod.Namespace+"/"+t.Pod.Name, "err", err)
			failed = true
			continue
		}
		seen[t.id()] = true
		rules, names := x.Compile(policy.Target{Pod: pod, Network: t.Network, Ports: ports})
		if last, ok := c.applied[t.id()]; ok && last.Equal(rules) {
			continue
		}
		jobs = append(jobs, applyJob{t: t, rules: rules, names: names})
	}
	c.applyAll(ctx, jobs)
	applied := 0
	for _, j := range jobs {
		t, rules := j.t, j.rules
		if j.err != nil {
			c.log.Warn("policy: apply failed; retrying", "pod", t.Pod.Namespace+"/"+t.Pod.Name, "ifname", t.IfName,
				"network", t.Network, "err", j.err)
			failed = true
			continue
		}
		c.applied[t.id()] = rules
		applied++
		c.log.Info("policy applied", "pod", t.Pod.Namespace+"/"+t.Pod.Name, "ifname", t.IfName, "network", t.Network,
			"policies", j.names, "ingressIsolated", rules.Ingress.Isolated, "ingressRules", len(rules.Ingress.Allow),
			"egressIsolated", rules.Egress.Isolated, "egressRules", len(rules.Egress.Allow), "apply", j.took)
	}
	for id := range c.applied {
		if !seen[id] {
			delete(c.applied, id) // detached, or its pod left the cache
		}
	}
	for _, n := range x.Notes {
		if !c.notes[n] {
			c.log.Warn("policy: part of a MultiNetworkPolicy ignored", "reason", n)
		}
	}
	c.notes = map[string]bool{}
	for _, n := range x.Notes {
		c.notes[n] = true
	}
	if applied > 0 {
		attrs := []any{"interfaces", applied, "pass", time.Since(start)}
		if !since.IsZero() {
			attrs = append(attrs, "sinceChange", time.Since(since))
		}
		c.log.Info("policy pass", attrs...)
	}
	return failed
}

// readyWait bounds how long an ADD waits for the caches at the agent's
// start (RulesFor).
const readyWait = 5 * time.Second

// RulesFor compiles one interface's rules from the caches as they are now
// (the agent's ADD, before the pod runs), so that a pod a policy selects
// never runs open. At the agent's start it waits up to readyWait for the
// caches; without the CRD no policy can exist, and the rules are open. A
// pod not in the cache yet (its watch event lags the kubelet's ADD) is read
// from the API: only its labels matter. ok is false when the caches are
// not ready in time, the pod cannot be read, or it is no Kubernetes pod;
// the controller's next pass applies its rules then.
func (c *PolicyController) RulesFor(ctx context.Context, t PolicyTarget) (r policy.Rules, ok bool) {
	if t.Pod.Name == "" {
		return r, false
	}
	if !c.awaitReady(ctx) {
		return r, false
	}
	switch c.state.Load() {
	case stateNoCRD:
		return r, true
	case stateSynced:
	default:
		return r, false // the CRD just appeared: caches syncing
	}
	in := c.currentInput()
	x := policy.NewIndex(in)
	ports, err := c.targetPorts(ctx, x, t.Pod)
	if err != nil {
		c.log.Warn("policy: the pod's container ports (for named ports) cannot be read; its rules wait for the next pass",
			"pod", t.Pod.Namespace+"/"+t.Pod.Name, "err", err)
		return r, false
	}
	for _, p := range in.Pods {
		if p.Namespace == t.Pod.Namespace && p.Name == t.Pod.Name && (t.Pod.UID == "" || p.UID == t.Pod.UID) {
			r, _ = x.Compile(policy.Target{Pod: p, Network: t.Network, Ports: ports})
			return r, true
		}
	}
	p, err := c.podMeta(ctx, t.Pod)
	if err != nil {
		c.log.Warn("policy: the pod being added is not in the cache and cannot be read; its rules wait for the next pass",
			"pod", t.Pod.Namespace+"/"+t.Pod.Name, "err", err)
		return r, false
	}
	r, _ = x.Compile(policy.Target{Pod: p, Network: t.Network, Ports: ports})
	return r, true
}

// targetPorts reads a local pod's container ports when some policy names
// a port (PolicyConfig.TargetPorts).
func (c *PolicyController) targetPorts(ctx context.Context, x *policy.Index, pod attach.Pod) ([]policy.ContainerPort, error) {
	if !x.NamedPorts() || c.cfg.TargetPorts == nil {
		return nil, nil
	}
	return c.cfg.TargetPorts(ctx, pod)
}

// awaitReady waits, up to readyWait, until the controller knows whether
// policies exist (caches synced, or no CRD). Once a wait ran out (the API
// server does not answer), later ADDs do not wait again until it does:
// an outage must not add readyWait to every pod's start.
func (c *PolicyController) awaitReady(ctx context.Context) bool {
	select {
	case <-c.ready:
		return true
	default:
	}
	if c.waitedOut.Load() {
		return false
	}
	t := time.NewTimer(c.readyWait)
	defer t.Stop()
	select {
	case <-c.ready:
		return true
	case <-ctx.Done():
	case <-t.C:
		c.waitedOut.Store(true)
		c.log.Warn("policy: caches not ready; ADDs answer before their MultiNetworkPolicy is known (the first pass applies it) until they are", "waited", c.readyWait)
	}
	return false
}

// podMeta reads a pod's labels from the API (its metadata only).
func (c *PolicyController) podMeta(ctx context.Context, pod attach.Pod) (*policy.Pod, error) {
	m, err := c.meta.Resource(podsGVR).Namespace(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if pod.UID != "" && string(m.UID) != pod.UID {
		return nil, fmt.Errorf("pod %s/%s has UID %s, not %s: it was replaced", pod.Namespace, pod.Name, m.UID, pod.UID)
	}
	return &policy.Pod{Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), Labels: m.Labels}, nil
}

// The controller's states, for RulesFor.
const (
	stateStarting int32 = iota // caches not synced
	stateNoCRD                 // MultiNetworkPolicies are not served: none exists
	stateSynced
)

// setState moves to s; the first state other than starting makes the
// controller ready.
func (c *PolicyController) setState(s int32) {
	c.state.Store(s)
	if s != stateStarting {
		c.readyOnce.Do(func() { close(c.ready) })
	}
}

type applyJob struct {
	t     PolicyTarget
	rules policy.Rules
	names []string
	err   error
	took  time.Duration
}

// applyAll runs the applications of one pass, Parallel at a time: an
// nftables transaction that deletes rules waits for the kernel's grace
// period (~12 ms) without using the CPU, so a policy change reaching many
// pods would otherwise take that long per pod.
func (c *PolicyController) applyAll(ctx context.Context, jobs []applyJob) {
	sem := make(chan struct{}, c.cfg.Parallel)
	var wg sync.WaitGroup
	for i := range jobs {
		j := &jobs[i]
		sem <- struct{}{}
		wg.Add(1)
		go func() { // owned by this pass: joined below
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			j.err = c.cfg.Apply(ctx, j.t, j.rules)
			j.took = time.Since(t0)
		}()
	}
	wg.Wait()
}

// input is the compilation's view of the caches (under inMu).
func (c *PolicyController) input() *policy.Input {
	in := &policy.Input{Namespaces: map[string]map[string]string{}, NetworkKey: c.cfg.NetworkKey}
	for _, obj := range c.policies.GetStore().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var p policy.MultiNetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			c.log.Warn("policy: MultiNetworkPolicy does not decode; ignored", "policy", u.GetNamespace()+"/"+u.GetName(), "err", err)
			continue
		}
		in.Policies = append(in.Policies, &p)
	}
	for _, obj := range c.namespaces.GetStore().List() {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			in.Namespaces[m.Name] = m.Labels
		}
	}
	live := map[string]bool{}
	for _, obj := range c.pods.GetStore().List() {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			continue
		}
		key := m.Namespace + "/" + m.Name
		live[key] = true
		p, ok := c.parsed[key]
		if !ok || p.rv != m.ResourceVersion {
			p = parsedPod{rv: m.ResourceVersion, pod: &policy.Pod{Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), Labels: m.Labels,
				Addrs: podAddrs(m.Annotations[api.NetworkStatusAnnotation])}}
			c.parsed[key] = p
		}
		in.Pods = append(in.Pods, p.pod)
	}
	for key := range c.parsed {
		if !live[key] {
			delete(c.parsed, key)
		}
	}
	return in
}

// podAddrs reads a network-status annotation: addresses per network. A
// malformed one gives none (the pod is no peer of anyone's).
func podAddrs(status string) map[string][]netip.Addr {
	if status == "" {
		return nil
	}
	var st []api.NetworkStatus
	if err := json.Unmarshal([]byte(status), &st); err != nil {
		return nil
	}
	out := map[string][]netip.Addr{}
	for _, s := range st {
		for _, ip := range s.IPs {
			if a, err := netip.ParseAddr(strings.TrimSpace(ip)); err == nil {
				out[s.Name] = append(out[s.Name], a.Unmap())
			}
		}
	}
	return out
}

// PolicyController is NewPolicyController on the agent's connection, with
// policy-for resolved as pods resolve network names (PolicyNetworkKey).
func (c *Cluster) PolicyController(cfg PolicyConfig) (*PolicyController, error) {
	if cfg.NetworkKey == nil {
		cfg.NetworkKey = c.PolicyNetworkKey
	}
	if cfg.Log == nil {
		cfg.Log = c.cfg.Log
	}
	if cfg.TargetPorts == nil {
		cfg.TargetPorts = c.PodPorts
	}
	return NewPolicyController(c.rc, cfg)
}

// PolicyNetworkKey resolves a policy-for entry as a pod of namespace ns
// resolves a network name: "namespace/name" as written; "name" in ns, else
// in the first global namespace that has it.
func (c *Cluster) PolicyNetworkKey(ns, ref string) string {
	if strings.Contains(ref, "/") {
		return ref
	}
	for _, n := range append([]string{ns}, c.cfg.GlobalNamespaces...) {
		if _, err := c.nads.NetworkAttachmentDefinitions(n).Get(ref); err == nil {
			return n + "/" + ref
		}
	}
	return ns + "/" + ref
}
