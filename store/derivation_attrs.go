package store

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Attrs gives a derivation's attributes with Nix's semantics: from the
// structured attributes (`__json`) when the derivation has them, else from
// its environment, where booleans are "1" and lists are whitespace
// separated (Nix's ParsedDerivation).
type Attrs struct {
	drv *Derivation
	// Structured holds the decoded __json object, or nil.
	Structured map[string]any
}

// Attrs parses the derivation's attributes.
func (d *Derivation) Attrs() (*Attrs, error) {
	a := &Attrs{drv: d}
	if js, ok := d.Env["__json"]; ok {
		dec := json.NewDecoder(strings.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&a.Structured); err != nil {
			return nil, fmt.Errorf("cannot process __json attribute of '%s': %w", d.Name, err)
		}
		if a.Structured == nil {
			return nil, fmt.Errorf("cannot process __json attribute of '%s': not an object", d.Name)
		}
	}
	return a, nil
}

// String returns a string attribute.
func (a *Attrs) String(name string) (string, bool, error) {
	if a.Structured != nil {
		v, ok := a.Structured[name]
		if !ok {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", false, fmt.Errorf("attribute '%s' of derivation '%s' must be a string", name, a.drv.Name)
		}
		return s, true, nil
	}
	s, ok := a.drv.Env[name]
	return s, ok, nil
}

// Bool returns a boolean attribute, or def when it is absent.
func (a *Attrs) Bool(name string, def bool) (bool, error) {
	if a.Structured != nil {
		v, ok := a.Structured[name]
		if !ok {
			return def, nil
		}
		b, isBool := v.(bool)
		if !isBool {
			return false, fmt.Errorf("attribute '%s' of derivation '%s' must be a Boolean", name, a.drv.Name)
		}
		return b, nil
	}
	s, ok := a.drv.Env[name]
	if !ok {
		return def, nil
	}
	return s == "1", nil
}

// Strings returns a list-of-strings attribute.
func (a *Attrs) Strings(name string) ([]string, bool, error) {
	if a.Structured != nil {
		v, ok := a.Structured[name]
		if !ok {
			return nil, false, nil
		}
		l, err := stringList(v)
		if err != nil {
			return nil, false, fmt.Errorf("attribute '%s' of derivation '%s' must be a list of strings", name, a.drv.Name)
		}
		return l, true, nil
	}
	s, ok := a.drv.Env[name]
	if !ok {
		return nil, false, nil
	}
	return strings.Fields(s), true, nil
}

func stringList(v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("not a list")
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("not a string")
		}
		out = append(out, s)
	}
	return out, nil
}

// RequiredSystemFeatures is the requiredSystemFeatures attribute.
func (a *Attrs) RequiredSystemFeatures() ([]string, error) {
	l, _, err := a.Strings("requiredSystemFeatures")
	return l, err
}

// SubstitutesAllowed is allowSubstitutes (default true).
func (a *Attrs) SubstitutesAllowed() (bool, error) { return a.Bool("allowSubstitutes", true) }

// PreferLocalBuild is preferLocalBuild (default false).
func (a *Attrs) PreferLocalBuild() (bool, error) { return a.Bool("preferLocalBuild", false) }

// NoChroot is __noChroot: the derivation asks to be built unsandboxed.
func (a *Attrs) NoChroot() (bool, error) { return a.Bool("__noChroot", false) }

// ImpureEnvVars lists the host variables a fixed-output build may see.
func (a *Attrs) ImpureEnvVars() ([]string, error) {
	l, _, err := a.Strings("impureEnvVars")
	return l, err
}

// PassAsFile lists the attributes passed in files rather than variables
// (not used with structured attributes).
func (a *Attrs) PassAsFile() []string {
	if a.Structured != nil {
		return nil
	}
	return strings.Fields(a.drv.Env["passAsFile"])
}

// ExportReferencesGraph returns file name → store paths whose closure
// graph the builder gets in that file.
func (a *Attrs) ExportReferencesGraph() (map[string][]string, error) {
	out := map[string][]string{}
	if a.Structured != nil {
		v, ok := a.Structured["exportReferencesGraph"]
		if !ok {
			return out, nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("attribute 'exportReferencesGraph' of derivation '%s' must be an attribute set", a.drv.Name)
		}
		for name, paths := range m {
			var l []string
			switch p := paths.(type) {
			case string:
				l = []string{p}
			default:
				var err error
				if l, err = stringList(p); err != nil {
					return nil, fmt.Errorf("exportReferencesGraph.%s of derivation '%s' must be a list of strings", name, a.drv.Name)
				}
			}
			out[name] = l
		}
		return out, nil
	}
	fields := strings.Fields(a.drv.Env["exportReferencesGraph"])
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("odd number of tokens in 'exportReferencesGraph': '%s'", a.drv.Env["exportReferencesGraph"])
	}
	for i := 0; i < len(fields); i += 2 {
		out[fields[i]] = append(out[fields[i]], fields[i+1])
	}
	return out, nil
}

// OutputChecks are the restrictions on one output's references and size.
// A nil list means "no restriction".
type OutputChecks struct {
	AllowedReferences    []string
	AllowedRequisites    []string
	DisallowedReferences []string
	DisallowedRequisites []string
	MaxSize              *uint64
	MaxClosureSize       *uint64
	IgnoreSelfRefs       bool
}

// OutputChecks returns the checks for each output: from outputChecks with
// structured attributes, else the legacy top-level attributes, which apply
// to every output and ignore self-references (as Nix 2.8).
func (a *Attrs) OutputChecks() (map[string]OutputChecks, error) {
	out := map[string]OutputChecks{}
	if a.Structured != nil {
		v, ok := a.Structured["outputChecks"]
		if !ok {
			return out, nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("attribute 'outputChecks' of derivation '%s' must be an attribute set", a.drv.Name)
		}
		for name, cv := range m {
			if _, isOut := a.drv.Outputs[name]; !isOut {
				continue
			}
			cm, ok := cv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("outputChecks.%s of derivation '%s' must be an attribute set", name, a.drv.Name)
			}
			var c OutputChecks
			lists := map[string]*[]string{
				"allowedReferences":    &c.AllowedReferences,
				"allowedRequisites":    &c.AllowedRequisites,
				"disallowedReferences": &c.DisallowedReferences,
				"disallowedRequisites": &c.DisallowedRequisites,
			}
			for k, dst := range lists {
				if lv, ok := cm[k]; ok {
					l, err := stringList(lv)
					if err != nil {
						return nil, fmt.Errorf("attribute '%s' of derivation '%s' must be a list of strings", k, a.drv.Name)
					}
					*dst = l
				}
			}
			sizes := map[string]**uint64{"maxSize": &c.MaxSize, "maxClosureSize": &c.MaxClosureSize}
			for k, dst := range sizes {
				if sv, ok := cm[k]; ok {
					n, err := jsonUint(sv)
					if err != nil {
						return nil, fmt.Errorf("attribute '%s' of derivation '%s' must be a non-negative integer", k, a.drv.Name)
					}
					*dst = &n
				}
			}
			if iv, ok := cm["ignoreSelfRefs"]; ok {
				b, isBool := iv.(bool)
				if !isBool {
					return nil, fmt.Errorf("attribute 'ignoreSelfRefs' of derivation '%s' must be a Boolean", a.drv.Name)
				}
				c.IgnoreSelfRefs = b
			}
			out[name] = c
		}
		return out, nil
	}
	c := OutputChecks{IgnoreSelfRefs: true}
	var err error
	for k, dst := range map[string]*[]string{
		"allowedReferences":    &c.AllowedReferences,
		"allowedRequisites":    &c.AllowedRequisites,
		"disallowedReferences": &c.DisallowedReferences,
		"disallowedRequisites": &c.DisallowedRequisites,
	} {
		var ok bool
		if *dst, ok, err = a.Strings(k); err != nil {
			return nil, err
		} else if ok && *dst == nil {
			*dst = []string{}
		}
	}
	for name := range a.drv.Outputs {
		out[name] = c
	}
	return out, nil
}

func jsonUint(v any) (uint64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("not a number")
	}
	var u uint64
	if _, err := fmt.Sscan(n.String(), &u); err != nil {
		return 0, err
	}
	return u, nil
}

// StructuredJSON re-encodes the structured attributes compactly with keys
// sorted, as Nix's nlohmann::json prints them.
func (a *Attrs) StructuredJSON() ([]byte, error) {
	return MarshalJSON(a.Structured)
}
