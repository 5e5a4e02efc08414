// Package kubestore is the coordinators' store in Kubernetes ConfigMaps. It
// is a package of its own so that only the coordinator links client-go.
package kubestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedv1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/sealmesh/sealmesh/ca/store"
)

// Store is a store in ConfigMaps, the HA backend inside a cluster: one
// ConfigMap per key, named <name>-<key> and labelled with the store's name.
// SwapLatest creates the latest ConfigMap, or updates it carrying the
// resourceVersion it was read at, so the API server (and its etcd) decides every
// race; the coordinators need no lock of their own.
type Store struct {
	cs        kubernetes.Interface
	namespace string
	name      string
}

var _ store.Store = (*Store)(nil)

const (
	storeLabel = "sealmesh.io/store"
	valueKey   = "value"
)

// Open uses cfg to reach the API server; the store lives in namespace,
// its ConfigMaps named <name>-<key>.
func Open(cfg *rest.Config, namespace, name string) (*Store, error) {
	// A transition writes a few objects at once; client-go's default of 5
	// requests/s would throttle it. The API server's own fairness still applies.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: kubernetes: %w", err)
	}
	return &Store{cs: cs, namespace: namespace, name: name}, nil
}

func (k *Store) cm(key string) string { return k.name + "-" + key }

func (k *Store) api() typedv1.ConfigMapInterface { return k.cs.CoreV1().ConfigMaps(k.namespace) }

func (k *Store) object(key string, value []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: k.cm(key), Namespace: k.namespace, Labels: map[string]string{storeLabel: k.name}},
		BinaryData: map[string][]byte{valueKey: value},
	}
}

func (k *Store) get(ctx context.Context, key string) (*corev1.ConfigMap, error) {
	cm, err := k.api().Get(ctx, k.cm(key), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: kubernetes get %s: %w", key, err)
	}
	return cm, nil
}

// Get implements store.Store.
func (k *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	cm, err := k.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return cm.BinaryData[valueKey], nil
}

// Put implements store.Store.
func (k *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		_, err := k.api().Create(ctx, k.object(key, value), metav1.CreateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("store: kubernetes put %s: %w", key, err)
		}
		cur, err := k.get(ctx, key)
		if err == store.ErrNotFound {
			continue // deleted in between: create again
		}
		if err != nil {
			return err
		}
		obj := k.object(key, value)
		obj.ResourceVersion = cur.ResourceVersion
		_, err = k.api().Update(ctx, obj, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("store: kubernetes put %s: %w", key, err)
		}
	}
	return fmt.Errorf("store: kubernetes put %s: kept conflicting with other writers", key)
}

// Delete implements store.Store.
func (k *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	err := k.api().Delete(ctx, k.cm(key), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("store: kubernetes delete %s: %w", key, err)
	}
	return nil
}

// List implements store.Store, paging through the store's ConfigMaps.
func (k *Store) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	opts := metav1.ListOptions{LabelSelector: storeLabel + "=" + k.name, Limit: 500}
	for {
		l, err := k.api().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("store: kubernetes list: %w", err)
		}
		for _, cm := range l.Items {
			key := strings.TrimPrefix(cm.Name, k.name+"-")
			if key != "latest" && strings.HasPrefix(key, prefix) {
				out[key] = cm.BinaryData[valueKey]
			}
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// Latest implements store.Store; the version is the ConfigMap's resourceVersion.
func (k *Store) Latest(ctx context.Context) ([]byte, store.Version, error) {
	cm, err := k.get(ctx, "latest")
	if err != nil {
		return nil, "", err
	}
	return cm.BinaryData[valueKey], store.Version(cm.ResourceVersion), nil
}

// SwapLatest implements store.Store.
func (k *Store) SwapLatest(ctx context.Context, old store.Version, value []byte) (store.Version, error) {
	return k.swap(ctx, "latest", old, value)
}

// GetVersion implements store.Store; the version is the ConfigMap's resourceVersion.
func (k *Store) GetVersion(ctx context.Context, key string) ([]byte, store.Version, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, "", err
	}
	cm, err := k.get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return cm.BinaryData[valueKey], store.Version(cm.ResourceVersion), nil
}

// Swap implements store.Store.
func (k *Store) Swap(ctx context.Context, key string, old store.Version, value []byte, also ...store.Record) (store.Version, error) {
	if err := store.CheckSwap(key, also); err != nil {
		return "", err
	}
	if len(also) == 0 {
		return k.swap(ctx, key, old, value)
	}
	// ConfigMaps have no transaction across objects: every record is
	// checked first, then written one by one; if another writer gets in
	// between, key goes back to what it was (other records already written
	// stay: they are hints their readers check). A coordinator that dies in
	// that moment leaves key written without the others.
	var before []byte
	if old != "" {
		b, err := k.at(ctx, key, old)
		if err != nil {
			return "", err
		}
		before = b
	}
	for _, a := range also {
		if _, err := k.at(ctx, a.Key, a.Old); err != nil {
			return "", err
		}
	}
	v, err := k.swap(ctx, key, old, value)
	if err != nil {
		return "", err
	}
	for _, a := range also {
		if _, err := k.swap(ctx, a.Key, a.Old, a.Value); err != nil {
			k.undo(ctx, key, v, old != "", before)
			return "", err
		}
	}
	return v, nil
}

// Remove implements store.Store: key is deleted on the precondition of its
// resourceVersion, then the others (ConfigMaps have no transaction across
// objects; a coordinator that dies in between leaves them, and they are
// hints their readers check).
func (k *Store) Remove(ctx context.Context, key string, old store.Version, also ...string) error {
	if err := store.CheckRemove(key, old, also); err != nil {
		return err
	}
	rv := string(old)
	err := k.api().Delete(ctx, k.cm(key), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("store: kubernetes remove %s: %w", key, err)
	}
	for _, a := range also {
		if err := k.Delete(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// at returns key's value if key is at version v ("" for none), store.ErrConflict
// if it is not.
func (k *Store) at(ctx context.Context, key string, v store.Version) ([]byte, error) {
	b, cur, err := k.GetVersion(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		b, cur, err = nil, "", nil
	}
	if err != nil {
		return nil, err
	}
	if cur != v {
		return nil, store.ErrConflict
	}
	return b, nil
}

// undo puts key back from version v to before (or removes it if it did not
// exist), if nobody has written it since.
func (k *Store) undo(ctx context.Context, key string, v store.Version, existed bool, before []byte) {
	if !existed {
		rv := string(v)
		k.api().Delete(ctx, k.cm(key), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		return
	}
	k.swap(ctx, key, v, before)
}

// swap creates the ConfigMap, or updates it at the resourceVersion old.
func (k *Store) swap(ctx context.Context, key string, old store.Version, value []byte) (store.Version, error) {
	obj := k.object(key, value)
	var cm *corev1.ConfigMap
	var err error
	if old == "" {
		cm, err = k.api().Create(ctx, obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return "", store.ErrConflict
		}
	} else {
		obj.ResourceVersion = string(old)
		cm, err = k.api().Update(ctx, obj, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) {
			return "", store.ErrConflict
		}
	}
	if err != nil {
		return "", fmt.Errorf("store: kubernetes swap %s: %w", key, err)
	}
	return store.Version(cm.ResourceVersion), nil
}

// Watch implements store.Store with a watch on the latest ConfigMap, re-opened when
// the API server closes it. A (re)opened watch first reports the current object,
// which only costs the reader a re-read.
func (k *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		sel := fields.OneTermEqualSelector("metadata.name", k.cm("latest")).String()
		for ctx.Err() == nil {
			w, err := k.api().Watch(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			for range w.ResultChan() {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			w.Stop()
		}
	}()
	return ch
}

var _ store.Follower = (*Store)(nil)

// Follow implements store.Follower as an informer does: a listing, then a watch
// from the listing's resourceVersion, resumed from the last one seen when
// the API server ends it, and a new listing when that is too old (410 Gone).
func (k *Store) Follow(ctx context.Context, prefix string) <-chan store.Update {
	ch := make(chan store.Update, 16)
	go func() {
		defer close(ch)
		for {
			recs, rv, err := k.list(ctx, prefix)
			if err != nil {
				if !store.RetryWait(ctx) {
					return
				}
				continue
			}
			if !store.SendUpdate(ctx, ch, store.Update{Reset: true, Changes: recs}) || !k.follow(ctx, ch, prefix, rv) {
				return
			}
		}
	}()
	return ch
}

// list is every record under prefix, with versions, and the listing's
// resourceVersion.
func (k *Store) list(ctx context.Context, prefix string) ([]store.Change, string, error) {
	var out []store.Change
	opts := metav1.ListOptions{LabelSelector: storeLabel + "=" + k.name, Limit: 500}
	for {
		l, err := k.api().List(ctx, opts)
		if err != nil {
			return nil, "", fmt.Errorf("store: kubernetes list: %w", err)
		}
		for _, cm := range l.Items {
			if c, ok := k.change(&cm, prefix, false); ok {
				out = append(out, c)
			}
		}
		if l.Continue == "" {
			return out, l.ResourceVersion, nil
		}
		opts.Continue = l.Continue
	}
}

// follow sends the changes from resourceVersion rv on, until ctx ends
// (false) or the watch cannot go on (true: list again).
func (k *Store) follow(ctx context.Context, ch chan<- store.Update, prefix, rv string) bool {
	for {
		w, err := k.api().Watch(ctx, metav1.ListOptions{LabelSelector: storeLabel + "=" + k.name, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			return store.RetryWait(ctx)
		}
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if ev.Type == watch.Error || !ok {
				w.Stop()
				return ctx.Err() == nil // too old (410 Gone) or broken: list again
			}
			rv = cm.ResourceVersion
			if ev.Type == watch.Bookmark {
				continue
			}
			c, ok := k.change(cm, prefix, ev.Type == watch.Deleted)
			if ok && !store.SendUpdate(ctx, ch, store.Update{Changes: []store.Change{c}}) {
				w.Stop()
				return false
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return false
		}
		// The API server ends every watch after a while: resume.
	}
}

// change is cm as a record under prefix; false for another prefix's, or the
// latest pointer.
func (k *Store) change(cm *corev1.ConfigMap, prefix string, deleted bool) (store.Change, bool) {
	key, ok := strings.CutPrefix(cm.Name, k.name+"-")
	if !ok || key == "latest" || !strings.HasPrefix(key, prefix) {
		return store.Change{}, false
	}
	if deleted {
		return store.Change{Key: key, Deleted: true}, true
	}
	return store.Change{Key: key, Value: cm.BinaryData[valueKey], Version: store.Version(cm.ResourceVersion)}, true
}
