package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// PlainValue returns v as plain JSON data: map[string]any, []any, string,
// bool, nil and numbers. It is the one place that makes a value safe to
// write: map keys that are not strings (YAML's `{22: ssh}`) become their
// text, non-finite numbers (`.inf`, NaN) become the strings "+Inf", "-Inf"
// and "NaN", and structs become maps through their JSON encoding. Every
// value that reaches an event (vars, outputs) passes here before it is
// redacted and written, so a value JSON cannot encode never costs a run its
// evidence, and no string hides from the redactor inside a type it does not
// know.
func PlainValue(v any) any {
	return plain(reflect.ValueOf(v), 0)
}

// maxPlainDepth stops a self-referencing value (a pointer cycle) from
// recursing forever.
const maxPlainDepth = 64

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

func plain(v reflect.Value, depth int) any {
	if !v.IsValid() {
		return nil
	}
	// Values already plain keep their Go type (an int stays an int).
	switch x := v.Interface().(type) {
	case string, bool, int, int64, int32, uint, uint64, uint32, []string, []int, []int64, []bool, map[string]string:
		return x
	}
	if depth > maxPlainDepth {
		return "(value nested too deeply)"
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return plainFloat(v.Float())
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Pointer && v.Type().Implements(jsonMarshaler) {
			return viaJSON(v)
		}
		return plain(v.Elem(), depth+1)
	case reflect.Map:
		if v.IsNil() {
			return map[string]any{}
		}
		out := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			out[keyText(it.Key())] = plain(it.Value(), depth+1)
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return string(v.Bytes())
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i), depth+1)
		}
		return out
	case reflect.Struct:
		return viaJSON(v)
	default:
		// Channels, functions: no data to keep, only their description.
		return fmt.Sprint(v.Interface())
	}
}

func plainFloat(f float64) any {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return f
}

// keyText is a map key as JSON object keys must be: text.
func keyText(k reflect.Value) string {
	switch p := plain(k, 0).(type) {
	case string:
		return p
	case float64:
		return strconv.FormatFloat(p, 'g', -1, 64)
	default:
		return fmt.Sprint(p)
	}
}

// viaJSON turns a struct (or a type with its own MarshalJSON) into plain
// data through its JSON encoding, so its tags decide the field names. A
// struct JSON cannot encode (a NaN field) is walked field by field instead.
func viaJSON(v reflect.Value) any {
	if b, err := json.Marshal(v.Interface()); err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var out any
		if dec.Decode(&out) == nil {
			return out
		}
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return fmt.Sprint(v.Interface())
	}
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			if tag == "-" {
				continue
			}
			if n, _, _ := strings.Cut(tag, ","); n != "" {
				name = n
			}
		}
		out[name] = plain(v.Field(i), 1)
	}
	return out
}

// PlainEvent makes every value of ev plain (see PlainValue) in place:
// vars, outputs, and the numbers of evidence series and marks.
func PlainEvent(ev *Event) {
	if si := ev.ScenarioInfo; si != nil && si.Vars != nil {
		si.Vars, _ = PlainValue(si.Vars).(map[string]any)
	}
	res := ev.Result
	if res == nil {
		return
	}
	if res.Outputs != nil {
		res.Outputs, _ = PlainValue(res.Outputs).(map[string]any)
	}
	for i := range res.Evidence {
		e := &res.Evidence[i]
		if len(e.Series) > 0 {
			series := make([]steps.Series, len(e.Series))
			for j, s := range e.Series {
				s.Points = finitePoints(s.Points)
				series[j] = s
			}
			e.Series = series
		}
		if len(e.Marks) > 0 {
			marks := make([]steps.Mark, 0, len(e.Marks))
			for _, m := range e.Marks {
				if !math.IsInf(m.X, 0) && !math.IsNaN(m.X) {
					marks = append(marks, m)
				}
			}
			e.Marks = marks
		}
	}
}

// finitePoints drops the (x, y) pairs of a series that hold a non-finite
// number: JSON cannot carry them and a chart cannot draw them.
func finitePoints(points []float64) []float64 {
	ok := true
	for _, p := range points {
		if math.IsInf(p, 0) || math.IsNaN(p) {
			ok = false
			break
		}
	}
	if ok {
		return points
	}
	out := make([]float64, 0, len(points))
	for i := 0; i+1 < len(points); i += 2 {
		x, y := points[i], points[i+1]
		if math.IsInf(x, 0) || math.IsNaN(x) || math.IsInf(y, 0) || math.IsNaN(y) {
			continue
		}
		out = append(out, x, y)
	}
	return out
}
