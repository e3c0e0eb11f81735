package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// decodeStrict decodes JSON into v and reports, all at once, every key that
// v's type does not have (typos must not be ignored silently) and the first
// type mismatch, each with its field path.
func decodeStrict(fe *fieldErrors, prefix string, data []byte, v any) {
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		fe.add(orRoot(prefix), nil, "is not valid JSON: %v", err)
		return
	}
	unknownFields(fe, prefix, generic, reflect.TypeOf(v).Elem())
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			fe.add(join(prefix, te.Field), te.Value, "has the wrong type (want %s)", te.Type)
			return
		}
		fe.add(orRoot(prefix), nil, "cannot be decoded: %v", err)
	}
}

func orRoot(p string) string {
	if p == "" {
		return "(document)"
	}
	return p
}

func unknownFields(fe *fieldErrors, p string, v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return // type mismatch: reported by json.Unmarshal
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				fe.add(join(p, k), nil, "is not a known field")
				continue
			}
			unknownFields(fe, join(p, k), m[k], ft)
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range l {
			unknownFields(fe, fmt.Sprintf("%s[%d]", p, i), e, t.Elem())
		}
	}
}

// jsonFields maps JSON keys to field types; a field tagged "-" is absent.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
