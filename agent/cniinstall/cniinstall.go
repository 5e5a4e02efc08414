// Package cniinstall puts sealmesh-cni on a node: its binary into the CNI bin
// directory and its entry at the end of the plugin list of the node's primary
// network configuration, and keeps it there when the primary CNI rewrites
// that file. It follows what Istio CNI and Cilium learned:
//
//   - the primary is the configuration the runtime would load: the directory's
//     .conf, .conflist and .json files in name order, the first valid one;
//   - a single-plugin .conf becomes a .conflist (a chain needs a list);
//   - every write is a temporary file in the same directory, with a name the
//     runtime does not read, renamed over the target, so the runtime never
//     sees half a file;
//   - the binary is copied the same way: a running binary cannot be written
//     to (ETXTBSY), but it can be replaced by a rename;
//   - uninstalling takes the entry out again and, if the file is otherwise as
//     sealmesh found it, puts back the original bytes (and the original .conf).
package cniinstall

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// PluginType is sealmesh-cni's type in a plugin list.
const PluginType = "sealmesh-cni"

// originalKey is the field of sealmesh's entry that keeps what the file was
// before sealmesh touched it (the runtime passes it to sealmesh-cni, which
// ignores it).
const originalKey = "sealmeshOriginal"

// tmpSuffix ends every temporary file: neither .conf, .conflist nor .json,
// so no runtime loads one.
const tmpSuffix = atomicfile.TempSuffix

// Extensions are the files a runtime reads as network configurations.
var Extensions = []string{".conf", ".conflist", ".json"}

// ErrNoPrimary: the directory holds no valid network configuration yet (the
// primary CNI has not written one); try again later.
var ErrNoPrimary = errors.New("cniinstall: no valid primary network configuration")

// original is what a file was before sealmesh's entry went in.
type original struct {
	// File is the file's name, when it was a .conf that became a .conflist.
	File string `json:"file,omitempty"`
	Data string `json:"data"`
}

// Primary returns the configuration file the runtime would load from dir:
// the first, in name order, that parses as a network configuration with at
// least one plugin.
func Primary(dir string) (string, error) {
	path, _, _, err := primary(dir)
	return path, err
}

// primary is Primary with what it read: the file's bytes and their parse.
func primary(dir string) (string, []byte, *libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, Extensions)
	if err != nil {
		return "", nil, nil, fmt.Errorf("cniinstall: list %s: %w", dir, err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if l, err := parse(f, b); err == nil {
			return f, b, l, nil
		}
	}
	return "", nil, nil, fmt.Errorf("%w in %s", ErrNoPrimary, dir)
}

// parse reads a configuration file as the runtime does: a .conflist as a list,
// anything else as a single plugin, which becomes a list of one.
func parse(path string, b []byte) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) != ".conflist" {
		c, err := libcni.NetworkPluginConfFromBytes(b)
		if err != nil {
			return nil, err
		}
		if c.Network.Type == "" {
			return nil, errors.New("no type")
		}
		var head struct {
			CNIVersion string `json:"cniVersion"`
			Name       string `json:"name"`
		}
		json.Unmarshal(b, &head)
		if b, err = json.Marshal(map[string]any{"cniVersion": head.CNIVersion, "name": head.Name, "plugins": []json.RawMessage{b}}); err != nil {
			return nil, err
		}
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		return nil, err
	}
	if len(l.Plugins) == 0 {
		return nil, errors.New("no plugins")
	}
	return l, nil
}

// Load reads the configuration file at path as the runtime does.
func Load(path string) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, b)
}

// Insert puts entry (sealmesh-cni's plugin configuration; its type is set to
// PluginType) at the end of the primary's plugin list in dir, converting a
// .conf into a .conflist. It writes only when something changes, and returns
// the file that now holds the entry.
func Insert(dir string, entry map[string]any) (string, error) {
	path, raw, _, err := primary(dir)
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("cniinstall: %s: %w", path, err)
	}
	want := map[string]any{}
	for k, v := range entry {
		want[k] = v
	}
	want["type"] = PluginType

	if filepath.Ext(path) != ".conflist" {
		// A single plugin: the list keeps its name and version, and the
		// plugin goes in whole.
		list := map[string]any{"cniVersion": doc["cniVersion"], "name": doc["name"]}
		want[originalKey] = original{File: filepath.Base(path), Data: string(raw)}
		list["plugins"] = []any{doc, want}
		target := strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
		if err := writeJSON(target, list); err != nil {
			return "", err
		}
		// The .conflist is in place before the .conf goes: a pod created
		// in between gets the old chain, never none.
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("cniinstall: remove %s after converting it: %w", path, err)
		}
		return target, nil
	}

	plugins, _ := doc["plugins"].([]any)
	kept := make([]any, 0, len(plugins)+1)
	var prev map[string]any
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
			prev = m
			continue
		}
		kept = append(kept, p)
	}
	if prev != nil {
		want[originalKey] = prev[originalKey]
	} else {
		want[originalKey] = original{Data: string(raw)}
	}
	// Compare through JSON: the entry read back holds decoded values.
	var last map[string]any
	if len(plugins) > 0 {
		last, _ = plugins[len(plugins)-1].(map[string]any)
	}
	if prev != nil && last["type"] == PluginType && jsonEqual(prev, want) {
		return path, nil
	}
	doc["plugins"] = append(kept, want)
	return path, writeJSON(path, doc)
}

// Remove takes sealmesh's entry out of every configuration file in dir. A file
// that is otherwise as sealmesh found it gets its original bytes back (a
// converted .conf its original name); one the primary CNI has changed since
// keeps those changes. It reports the files it changed.
func Remove(dir string) ([]string, error) {
	files, err := libcni.ConfFiles(dir, Extensions)
	if err != nil {
		return nil, fmt.Errorf("cniinstall: list %s: %w", dir, err)
	}
	sort.Strings(files)
	var changed []string
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			return changed, fmt.Errorf("cniinstall: %w", err)
		}
		var doc map[string]any
		if json.Unmarshal(raw, &doc) != nil {
			continue
		}
		plugins, _ := doc["plugins"].([]any)
		var kept []any
		var orig *original
		for _, p := range plugins {
			m, ok := p.(map[string]any)
			if !ok || m["type"] != PluginType {
				kept = append(kept, p)
				continue
			}
			if o, ok := m[originalKey]; ok {
				b, _ := json.Marshal(o)
				orig = &original{}
				if json.Unmarshal(b, orig) != nil {
					orig = nil
				}
			}
		}
		if len(kept) == len(plugins) {
			continue
		}
		doc["plugins"] = kept
		if err := restore(path, doc, orig); err != nil {
			return changed, err
		}
		changed = append(changed, path)
	}
	return changed, nil
}

// restore writes doc (a list without sealmesh's entry) back to path, as the
// original bytes when doc is what they said.
func restore(path string, doc map[string]any, orig *original) error {
	if orig != nil && orig.File != "" {
		var was map[string]any
		plugins := doc["plugins"].([]any)
		if json.Unmarshal([]byte(orig.Data), &was) == nil && len(plugins) == 1 && jsonEqual(plugins[0], was) {
			target := filepath.Join(filepath.Dir(path), filepath.Base(orig.File))
			if err := writeFile(target, []byte(orig.Data), 0o644); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("cniinstall: remove %s: %w", path, err)
			}
			return nil
		}
	}
	if orig != nil && orig.File == "" {
		var was map[string]any
		if json.Unmarshal([]byte(orig.Data), &was) == nil && jsonEqual(doc, was) {
			return writeFile(path, []byte(orig.Data), 0o644)
		}
	}
	return writeJSON(path, doc)
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	json.Unmarshal(ja, &va)
	json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("cniinstall: %s: %w", path, err)
	}
	return writeFile(path, append(b, '\n'), 0o644)
}

// writeFile replaces path atomically (package atomicfile): a temporary file in
// the same directory, with a name no runtime reads, synced, then renamed over
// path.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteMode(filepath.Dir(path), filepath.Base(path), data, mode); err != nil {
		return fmt.Errorf("cniinstall: %w", err)
	}
	return nil
}

// CopyBinary installs src as dir/name (mode 0755) by copy and rename, so a
// copy the runtime is executing at that moment is replaced, not written to.
// An identical binary already there is left alone.
func CopyBinary(src, dir, name string) (bool, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("cniinstall: %w", err)
	}
	dst := filepath.Join(dir, name)
	if cur, err := os.ReadFile(dst); err == nil && sha256.Sum256(cur) == sha256.Sum256(data) {
		return false, nil
	}
	if err := writeFile(dst, data, 0o755); err != nil {
		return false, err
	}
	return true, nil
}

// Installed reports whether the primary configuration in dir chains
// sealmesh-cni last and binDir holds the plugin: what readiness means.
func Installed(dir, binDir string) error {
	path, _, l, err := primary(dir)
	if err != nil {
		return err
	}
	if last := l.Plugins[len(l.Plugins)-1].Network.Type; last != PluginType {
		return fmt.Errorf("cniinstall: %s ends with %q, not %s", path, last, PluginType)
	}
	if _, err := os.Stat(filepath.Join(binDir, PluginType)); err != nil {
		return fmt.Errorf("cniinstall: %w", err)
	}
	return nil
}
