package meshctl

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Changes is the structural difference between two manifests (JSON or the
// canonical form): one line per field path added (+), removed (-) or changed
// (~), in path order — not re-indented lines. Lists of objects are keyed by
// their "name" (roles, owners, coordinators, lighthouses) or "fingerprint"
// (revoked), so that an insertion does not show as every later entry
// changed; lists of plain values are one field.
func Changes(a, b []byte) ([]string, error) {
	fa, err := fields(a)
	if err != nil {
		return nil, err
	}
	fb, err := fields(b)
	if err != nil {
		return nil, err
	}
	var paths []string
	for p := range fa {
		paths = append(paths, p)
	}
	for p := range fb {
		if _, ok := fa[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		va, ina := fa[p]
		vb, inb := fb[p]
		switch {
		case !ina:
			out = append(out, fmt.Sprintf("+ %s: %s", p, vb))
		case !inb:
			out = append(out, fmt.Sprintf("- %s: %s", p, va))
		case va != vb:
			out = append(out, fmt.Sprintf("~ %s: %s → %s", p, va, vb))
		}
	}
	return out, nil
}

// fields flattens a JSON document into field path → JSON value.
func fields(raw []byte) (map[string]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	out := map[string]string{}
	flatten(v, "", out)
	return out, nil
}

func flatten(v any, path string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			out[path] = "{}"
		}
		for k, c := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			flatten(c, p, out)
		}
	case []any:
		if len(x) == 0 || !slices.ContainsFunc(x, func(e any) bool { _, ok := e.(map[string]any); return ok }) {
			b, _ := json.Marshal(x)
			out[path] = string(b)
			return
		}
		for i, e := range x {
			flatten(e, fmt.Sprintf("%s[%s]", path, key(e, i)), out)
		}
	default:
		b, _ := json.Marshal(x)
		out[path] = string(b)
	}
}

// key names a list entry by its name or fingerprint, else its index.
func key(e any, i int) string {
	if m, ok := e.(map[string]any); ok {
		for _, k := range []string{"fingerprint", "name"} {
			if s, ok := m[k].(string); ok && s != "" {
				if len(s) > 16 {
					s = s[:16]
				}
				return strings.ReplaceAll(s, ".", "_")
			}
		}
	}
	return fmt.Sprint(i)
}
