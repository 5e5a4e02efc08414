// Package strictjson decodes documents people write (manifests, policies;
// often YAML converted to JSON) refusing unknown fields, and words the errors
// for those people: the field's place in their document, the known field
// they probably meant, and the type a value should have, instead of Go's
// struct names.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Decode decodes js into v (a pointer), refusing unknown fields.
func Decode(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ute) && ute.Field != "":
		return fmt.Errorf("%s: want %s, got %s", ute.Field, kind(ute.Type), article(ute.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		var doc any
		if json.Unmarshal(js, &doc) == nil {
			var errs []error
			walk(doc, reflect.TypeOf(v), "", &errs)
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
		}
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// walk finds the fields of doc that t does not have.
func walk(doc any, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return // decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return
		}
		fields := map[string]reflect.Type{}
		collect(t, fields)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := lookup(fields, k)
			if !ok {
				where := ""
				if path != "" {
					where = path + ": "
				}
				msg := fmt.Sprintf("%sunknown field %q", where, k)
				if s := nearest(k, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, errors.New(msg))
				continue
			}
			walk(obj[k], ft, join(path, k), errs)
		}
	case reflect.Slice, reflect.Array:
		if arr, ok := doc.([]any); ok {
			for i, e := range arr {
				walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	case reflect.Map:
		if obj, ok := doc.(map[string]any); ok {
			for k, e := range obj {
				walk(e, t.Elem(), join(path, k), errs)
			}
		}
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// collect adds t's JSON field names and types, embedded structs' included.
func collect(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || (!f.IsExported() && !f.Anonymous):
		case f.Anonymous && name == "":
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				collect(et, into)
			}
		default:
			if name == "" {
				name = f.Name
			}
			into[name] = f.Type
		}
	}
}

// lookup matches as encoding/json does: exactly, else ignoring case.
func lookup(fields map[string]reflect.Type, k string) (reflect.Type, bool) {
	if t, ok := fields[k]; ok {
		return t, true
	}
	for name, t := range fields {
		if strings.EqualFold(name, k) {
			return t, true
		}
	}
	return nil, false
}

// nearest is the known field closest to k, if close enough to be a typo.
// (A typo: at most two edits, or a third of the word's length.)
func nearest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", max(2, len(k)/3)+1
	for name := range fields {
		if d := distance(strings.ToLower(k), strings.ToLower(name)); d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// kind names t as a document's author thinks of it.
func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping (key: value)"
	}
	return t.String()
}

func article(v string) string {
	switch v {
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	case "number", "string":
		return "a " + v
	}
	return v
}
