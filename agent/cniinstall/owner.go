package cniinstall

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DaemonSetGone reports whether the DaemonSet namespace/name is deleted or
// being deleted: when install-cni stops, that tells an uninstall (take the
// plugin out of the node's configuration) from a rolling update or a node
// drain (leave it, so pods wait for the agent instead of starting without
// their encrypted interface).
func DaemonSetGone(ctx context.Context, cs kubernetes.Interface, namespace, name string) (bool, error) {
	ds, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("cniinstall: read DaemonSet %s/%s: %w", namespace, name, err)
	}
	return ds.DeletionTimestamp != nil, nil
}
