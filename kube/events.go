package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

func eventScheme() *runtime.Scheme { return scheme.Scheme }

// warn records a Warning event on obj (a pod or a NAD).
func (c *Cluster) warn(obj runtime.Object, reason, msg string) {
	c.events.Event(obj, corev1.EventTypeWarning, reason, msg)
}
