package runner

import (
	"reflect"

	"github.com/opsdrill/opsdrill/steps"
)

// Schema returns a JSON Schema (draft 2020-12) of scenario files and step
// files (uses: ./file.yaml), with each registered step's `with:`
// parameters, for YAML editors (yaml-language-server: `#
// yaml-language-server: $schema=opsdrill.schema.json`).
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
			"id": map[string]any{"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "name of the step in expressions: steps.<id>.outputs"},
			"uses": map[string]any{"anyOf": []any{
				map[string]any{"enum": stepNames},
				map[string]any{"type": "string", "pattern": `^\.\.?/.+\.ya?ml$`, "description": "a step file, relative to this file"},
			}, "description": "step type (`opsdrill steps` lists them), or ./path/to/step.yaml"},
			"with":              map[string]any{"type": "object"},
			"expect":            map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}, "description": "boolean expressions over outputs.NAME"},
			"if":                map[string]any{"type": "string", "description": "run the step only when this expression is true"},
			"timeout":           duration,
			"retry":             map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{"attempts": map[string]any{"type": "integer", "minimum": 1}, "delay": duration, "backoff": map[string]any{"type": "number", "minimum": 1}}},
			"background":        map[string]any{"type": "boolean"},
			"continue_on_error": map[string]any{"type": "boolean"},
			"finding":           map[string]any{"type": "string", "description": "the drill's own words for this step in the report's findings, e.g. \"SSH closed from the other client\"; {NAME} and {with.NAME} read its outputs and parameters"},
			"for_each": map[string]any{"anyOf": []any{
				map[string]any{"type": "array"}, map[string]any{"type": "object"},
				map[string]any{"type": "string", "pattern": `^\s*\$\{\{.*\}\}\s*$`},
			}, "description": "run once per item of a list or mapping (each.key, each.value); iterations are reported as ID[KEY]"},
			"parallel": map[string]any{"type": "integer", "minimum": 1, "description": "with for_each: iterations run at once (default 1)"},
		},
		"allOf": conditional,
	}
	stepList := map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/step"}}
	ident := map[string]any{"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
	stepFile := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"steps"},
		"description":          "a step written in YAML, used with uses: ./path.yaml",
		"properties": map[string]any{
			"name":        map[string]any{"type": "string"},
			"description": map[string]any{"type": "string"},
			"inputs": map[string]any{"type": "object", "propertyNames": ident, "additionalProperties": map[string]any{
				"type": "object", "additionalProperties": false,
				"properties": map[string]any{
					"type":        map[string]any{"enum": stringsToAny(InputTypes), "description": "checked where the file is used (default string)"},
					"required":    map[string]any{"type": "boolean"},
					"default":     map[string]any{},
					"secret":      map[string]any{"type": "boolean", "description": "redacted in every report"},
					"description": map[string]any{"type": "string"},
				},
			}},
			"steps": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/step"}},
			"outputs": map[string]any{"type": "object", "propertyNames": ident, "additionalProperties": map[string]any{"anyOf": []any{
				map[string]any{"type": "string", "pattern": `\$\{\{.*\}\}`},
				map[string]any{"type": "object", "additionalProperties": false, "required": []any{"value"}, "properties": map[string]any{
					"value": map[string]any{"type": "string", "pattern": `\$\{\{.*\}\}`}, "description": map[string]any{"type": "string"}, "secret": map[string]any{"type": "boolean"},
				}},
			}}},
		},
	}
	scenario := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		// x- keys hold anchors for the rest of the file.
		"patternProperties": map[string]any{"^x-": map[string]any{}},
		"required":          []any{"steps"},
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
			"steady_state": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/step"},
				"description": "checked before the steps (failing: not_started) and after them, before cleanup (failing: deviated)"},
			"steps":   map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/step"}},
			"cleanup": stepList,
		},
	}
	return map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "opsdrill.schema.json",
		"title":       "opsdrill scenario",
		"description": "an opsdrill scenario, or a step file (a step written in YAML, used with uses: ./path.yaml)",
		"anyOf":       []any{map[string]any{"$ref": "#/$defs/scenario"}, map[string]any{"$ref": "#/$defs/step_file"}},
		"$defs":       map[string]any{"step": step, "scenario": scenario, "step_file": stepFile},
	}
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
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
	// A parameter's value may be one ${{ }} expression; plain strings
	// already accept one, durations and times (patterned strings) do not.
	if t.Kind() != reflect.String && t.Kind() != reflect.Interface {
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
