package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadinformers "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/informers/externalversions"
	nadlisters "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/listers/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

// Config configures the agent's cluster connection.
type Config struct {
	// NodeName is this node's Node object name (the DaemonSet passes it as
	// NODE_NAME): pods are watched on it, blocks held for it.
	NodeName string
	// GlobalNamespaces are namespaces whose networks every pod may use,
	// besides its own namespace's.
	GlobalNamespaces []string
	// LeaseNamespace holds the controller's leader-election Lease.
	LeaseNamespace string
	// GCInterval is how often the elected controller frees the blocks of
	// nodes that are gone and the reservations of pods that are gone
	// (0: 30 s).
	GCInterval time.Duration
	Log        *slog.Logger
}

// Cluster is one agent's connection to the API server.
type Cluster struct {
	cfg    Config
	rc     *rest.Config // the agent's, for controllers that make their own clients
	client kubernetes.Interface
	dyn    dynamic.Interface
	log    *slog.Logger

	factory    informers.SharedInformerFactory
	nadFactory nadinformers.SharedInformerFactory
	pods       corelisters.PodLister
	nads       nadlisters.NetworkAttachmentDefinitionLister
	synced     []cache.InformerSynced
	events     record.EventRecorder
	broadcast  record.EventBroadcaster
	networks   *networkSource
}

// RESTConfig returns the client configuration: from kubeconfig when set,
// else the in-cluster one when the agent runs in a pod, else nil (no
// Kubernetes: the agent runs on its embedded default).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return rc, nil
}

// New connects to the API server described by rc. Call Start before use.
func New(rc *rest.Config, cfg Config) (*Cluster, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("kube: the node name is required (-node-name or NODE_NAME)")
	}
	if cfg.LeaseNamespace == "" {
		cfg.LeaseNamespace = "telcni-system"
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "telcni-agent/" + cfg.NodeName
	// A burst of pods must not wait on client-side throttling; the API
	// server's own priority and fairness protects it.
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 100, 200
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	nc, err := nadclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("NetworkAttachmentDefinition client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	c := &Cluster{cfg: cfg, rc: rc, client: client, dyn: dyn, log: cfg.Log.With("component", "kube")}
	// Only this node's pods: an agent never watches the whole cluster's.
	c.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	podInf := c.factory.Core().V1().Pods()
	c.pods = podInf.Lister()
	c.nadFactory = nadinformers.NewSharedInformerFactory(nc, 0)
	nadInf := c.nadFactory.K8sCniCncfIo().V1().NetworkAttachmentDefinitions()
	c.nads = nadInf.Lister()
	c.synced = []cache.InformerSynced{podInf.Informer().HasSynced, nadInf.Informer().HasSynced}
	c.networks = &networkSource{c: c, parsed: map[string]parsedNAD{}}
	c.broadcast = record.NewBroadcaster()
	c.events = c.broadcast.NewRecorder(eventScheme(), corev1.EventSource{Component: "telcni-agent", Host: cfg.NodeName})
	return c, nil
}

// Start runs the informers until ctx ends and waits (up to a minute) for
// their caches; events are sent from then on.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.checkCRDs(); err != nil {
		return err
	}
	c.factory.Start(ctx.Done())
	c.nadFactory.Start(ctx.Done())
	c.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	go func() { <-ctx.Done(); c.broadcast.Shutdown() }() // owned: ends with ctx
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), c.synced...) {
		return fmt.Errorf("kube: caches of pods on node %s and NetworkAttachmentDefinitions did not sync within a minute", c.cfg.NodeName)
	}
	c.log.Info("connected to Kubernetes", "node", c.cfg.NodeName, "globalNamespaces", c.cfg.GlobalNamespaces)
	return nil
}

// Client is the typed clientset (tests, telcnictl).
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Visible reports whether pods of podNS may use networks of netNS: their
// own namespace's and the global namespaces'.
func (c *Cluster) Visible(podNS, netNS string) bool {
	return netNS == "" || netNS == podNS || slices.Contains(c.cfg.GlobalNamespaces, netNS)
}
