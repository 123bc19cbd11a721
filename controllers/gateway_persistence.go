package controllers

import (
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/client-go/openapi"
)

// httpRouteSchemaServesSessionPersistence reads the HTTPRoute schema the apiserver serves
// (OpenAPI v3, readable by every authenticated client) and reports whether a rule may carry
// sessionPersistence. The standard-channel CRD of Gateway API v1.6 has no such field, and
// the apiserver prunes it on write without a word: users would silently not be pinned.
func httpRouteSchemaServesSessionPersistence(oa openapi.Client) (bool, error) {
	paths, err := oa.Paths()
	if err != nil {
		return false, fmt.Errorf("listing openapi paths: %w", err)
	}
	gv, ok := paths["apis/"+httpRouteKind.GroupVersion().String()]
	if !ok {
		return false, nil
	}
	raw, err := gv.Schema("application/json")
	if err != nil {
		return false, fmt.Errorf("reading the %s openapi schema: %w", httpRouteKind.GroupVersion(), err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]schemaNode `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return false, fmt.Errorf("decoding the %s openapi schema: %w", httpRouteKind.GroupVersion(), err)
	}
	defs := doc.Components.Schemas
	for _, s := range defs {
		if !s.isKind(httpRouteKind.Kind, httpRouteKind.Version) {
			continue
		}
		rule := s.prop(defs, "spec").prop(defs, "rules").items(defs)
		_, ok := rule.properties(defs)["sessionPersistence"]
		return ok, nil
	}
	return false, fmt.Errorf("no %s schema in the %s openapi document", httpRouteKind.Kind, httpRouteKind.GroupVersion())
}

// schemaNode is one OpenAPI v3 schema, walked loosely: a missing step yields an empty node.
type schemaNode map[string]any

func (s schemaNode) isKind(kind, version string) bool {
	gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
	for _, g := range gvks {
		m, _ := g.(map[string]any)
		if m["kind"] == kind && m["version"] == version && m["group"] == httpRouteKind.Group {
			return true
		}
	}
	return false
}

// resolve follows a $ref (directly or as the single entry of allOf) into the components.
func (s schemaNode) resolve(defs map[string]schemaNode) schemaNode {
	for range 8 {
		ref, _ := s["$ref"].(string)
		if ref == "" {
			if all, _ := s["allOf"].([]any); len(all) == 1 {
				if m, ok := all[0].(map[string]any); ok {
					s = m
					continue
				}
			}
			return s
		}
		s = defs[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
	return s
}

func (s schemaNode) properties(defs map[string]schemaNode) map[string]any {
	props, _ := s.resolve(defs)["properties"].(map[string]any)
	return props
}

func (s schemaNode) prop(defs map[string]schemaNode, name string) schemaNode {
	m, _ := s.properties(defs)[name].(map[string]any)
	return m
}

func (s schemaNode) items(defs map[string]schemaNode) schemaNode {
	m, _ := s.resolve(defs)["items"].(map[string]any)
	return m
}
