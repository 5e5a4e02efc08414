package cniinstall

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
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

// DaemonSetWatch follows a DaemonSet from install-cni's start, so that its
// deletion is known even when, by the time install-cni stops, the uninstall
// has also taken away the permission to read it.
type DaemonSetWatch struct {
	gone atomic.Bool
}

// WatchDaemonSet starts following namespace/name until ctx ends.
func WatchDaemonSet(ctx context.Context, cs kubernetes.Interface, namespace, name string, log *slog.Logger) *DaemonSetWatch {
	w := &DaemonSetWatch{}
	go func() {
		sel := fields.OneTermEqualSelector("metadata.name", name).String()
		for ctx.Err() == nil {
			if gone, err := DaemonSetGone(ctx, cs, namespace, name); err == nil && gone {
				w.gone.Store(true)
			}
			wi, err := cs.AppsV1().DaemonSets(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				log.Debug("watch DaemonSet", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
				continue
			}
			for ev := range wi.ResultChan() {
				ds, ok := ev.Object.(*appsv1.DaemonSet)
				if ev.Type == watch.Deleted || (ok && ds.DeletionTimestamp != nil) {
					w.gone.Store(true)
				}
			}
			wi.Stop()
		}
	}()
	return w
}

// Gone reports whether the DaemonSet was seen deleted or being deleted.
func (w *DaemonSetWatch) Gone() bool { return w.gone.Load() }
