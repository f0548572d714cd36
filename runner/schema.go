package runner

import (
	"reflect"

	"github.com/opsdrill/opsdrill/steps"
)

// Schema returns a JSON Schema (draft 2020-12) of scenario files, with each
// registered step's `with:` parameters, for YAML editors (yaml-language-
// server: `# yaml-language-server: $schema=opsdrill.schema.json`).
func Schema() map[string]any {
	exprOr := func(s map[string]any) map[string]any {
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "string", "pattern": `\$\{\{.*\}\}`}}}
	}
	duration := map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	var stepNames []any
	var conditional []any
	for _, s := range steps.All() {
		stepNames = append(stepNames, s.Name)
		conditional = append(conditional, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"uses": map[string]any{"const": s.Name}}, "required": []any{"uses"}},
			"then": map[string]any{"properties": map[string]any{"with": paramsSchema(s, exprOr, duration)}},
		})
	}
	step := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"uses"},
		"properties": map[string]any{
			"id":                map[string]any{"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "name of the step in expressions: steps.<id>.outputs"},
			"uses":              map[string]any{"enum": stepNames, "description": "step type; `opsdrill steps` lists them"},
			"with":              map[string]any{"type": "object"},
			"expect":            map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}, "description": "boolean expressions over outputs.NAME"},
			"if":                map[string]any{"type": "string", "description": "run the step only when this expression is true"},
			"timeout":           duration,
			"retry":             map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{"attempts": map[string]any{"type": "integer", "minimum": 1}, "delay": duration, "backoff": map[string]any{"type": "number", "minimum": 1}}},
			"background":        map[string]any{"type": "boolean"},
			"continue_on_error": map[string]any{"type": "boolean"},
		},
		"allOf": conditional,
	}
	return map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"$id":                  "opsdrill.schema.json",
		"title":                "opsdrill scenario",
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"steps"},
		"properties": map[string]any{
			"name":        map[string]any{"type": "string"},
			"description": map[string]any{"type": "string"},
			"tags":        map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"controls": map[string]any{"type": "array", "items": map[string]any{"type": "string", "minLength": 1}, "uniqueItems": true,
				"description": "controls the drill evidences, e.g. ISO27001:A.5.30, SOC2:CC7.5, PCI-DSS:11.4"},
			"timeout": duration,
			"vars":    map[string]any{"type": "object", "propertyNames": map[string]any{"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
			"secrets": map[string]any{"type": "object", "additionalProperties": map[string]any{
				"type": "object", "additionalProperties": false, "minProperties": 1, "maxProperties": 2,
				"properties": map[string]any{"env": map[string]any{"type": "string"}, "file": map[string]any{"type": "string"}, "optional": map[string]any{"type": "boolean"}},
			}},
			"steps":   map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/step"}},
			"cleanup": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/step"}},
		},
		"$defs": map[string]any{"step": step},
	}
}

func paramsSchema(s steps.Spec, exprOr func(map[string]any) map[string]any, duration map[string]any) map[string]any {
	return typeSchema(reflect.TypeOf(s.New()), exprOr, duration, s.Summary)
}

func typeSchema(t reflect.Type, exprOr func(map[string]any) map[string]any, duration map[string]any, doc string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out map[string]any
	switch {
	case t == durationType:
		out = copyMap(duration)
	case t == timeType:
		out = map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Struct:
		props := map[string]any{}
		var required []any
		for _, f := range Fields(t) {
			props[f.Name] = typeSchema(f.Type, exprOr, duration, f.Doc)
			if f.Required {
				required = append(required, f.Name)
			}
		}
		out = map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if len(required) > 0 {
			out["required"] = required
		}
		if doc != "" {
			out["description"] = doc
		}
		return out
	case t.Kind() == reflect.Slice:
		out = map[string]any{"type": "array", "items": typeSchema(t.Elem(), exprOr, duration, "")}
	case t.Kind() == reflect.Map:
		out = map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem(), exprOr, duration, "")}
	case t.Kind() == reflect.String:
		out = map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		out = map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		out = map[string]any{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		out = map[string]any{"type": "number"}
	default:
		out = map[string]any{}
	}
	if t.Kind() != reflect.String && t.Kind() != reflect.Interface && t != durationType && t != timeType {
		out = exprOr(out)
	}
	if doc != "" {
		out["description"] = doc
	}
	return out
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
