package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// derivationJSON is the shape of one derivation in `nix derivation show`.
type derivationJSON struct {
	Outputs   map[string]outputJSON `json:"outputs"`
	InputSrcs []string              `json:"inputSrcs"`
	InputDrvs map[string][]string   `json:"inputDrvs"`
	System    string                `json:"system"`
	Builder   string                `json:"builder"`
	Args      []string              `json:"args"`
	Env       map[string]string     `json:"env"`
}

type outputJSON struct {
	Path     string `json:"path,omitempty"`
	HashAlgo string `json:"hashAlgo,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// JSON returns the derivation in the form of `nix derivation show` (the
// value under the .drv path key).
func (d *Derivation) JSON() ([]byte, error) {
	j := derivationJSON{
		Outputs:   map[string]outputJSON{},
		InputSrcs: []string{},
		InputDrvs: map[string][]string{},
		System:    d.Platform,
		Builder:   d.Builder,
		Args:      append([]string{}, d.Args...),
		Env:       d.Env,
	}
	if j.Env == nil {
		j.Env = map[string]string{}
	}
	for n, o := range d.Outputs {
		j.Outputs[n] = outputJSON{Path: string(o.Path), HashAlgo: o.HashAlgo, Hash: o.Hash}
	}
	srcs := append([]Path(nil), d.InputSrcs...)
	SortPaths(srcs)
	for _, s := range srcs {
		j.InputSrcs = append(j.InputSrcs, string(s))
	}
	for p, outs := range d.InputDrvs {
		o := append([]string{}, outs...)
		j.InputDrvs[string(p)] = o
	}
	return MarshalJSON(j)
}

// MarshalJSON encodes v compactly without Go's HTML escaping of <, > and &,
// which Nix does not do.
func MarshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// parsedJSON is what ParseDerivationJSON accepts: the output of `nix
// derivation show` of any Nix version. Unknown keys are ignored.
type parsedJSON struct {
	Name    *string `json:"name"`
	Outputs map[string]struct {
		Path     string `json:"path"`
		HashAlgo string `json:"hashAlgo"`
		Hash     string `json:"hash"`
		// Method is newer Nix's way of saying "nar" (recursive) or "flat".
		Method string `json:"method"`
	} `json:"outputs"`
	InputSrcs []string                   `json:"inputSrcs"`
	InputDrvs map[string]json.RawMessage `json:"inputDrvs"`
	System    *string                    `json:"system"`
	Builder   *string                    `json:"builder"`
	Args      []string                   `json:"args"`
	Env       map[string]string          `json:"env"`
}

// ParseDerivationJSON reads a derivation in JSON form. It accepts either
// one derivation object or the {"<drv path>": {…}} map that `nix
// derivation show` prints (with exactly one entry). The name comes from a
// top-level "name", else from env.name. Output paths may be empty; call
// FillOutputs to compute them.
func ParseDerivationJSON(dir Dir, data []byte) (*Derivation, error) {
	raw, err := decodeStrict(data)
	if err != nil {
		return nil, fmt.Errorf("parsing derivation JSON: %w", err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("parsing derivation JSON: expected an object: %w", err)
	}
	if len(obj) == 1 {
		for k, v := range obj {
			if strings.HasPrefix(k, string(dir)+"/") && strings.HasSuffix(k, ".drv") {
				raw = v
			}
		}
	}
	var j parsedJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("parsing derivation JSON: %w", err)
	}
	d := &Derivation{
		Outputs:   map[string]DerivationOutput{},
		InputDrvs: map[Path][]string{},
		InputSrcs: []Path{},
		Args:      j.Args,
		Env:       j.Env,
	}
	if d.Env == nil {
		d.Env = map[string]string{}
	}
	if d.Args == nil {
		d.Args = []string{}
	}
	switch {
	case j.Name != nil:
		d.Name = *j.Name
	case d.Env["name"] != "":
		d.Name = d.Env["name"]
	case d.Env["__json"] != "":
		// Structured attributes carry the name inside __json.
		var attrs struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(d.Env["__json"]), &attrs); err != nil || attrs.Name == "" {
			return nil, fmt.Errorf("derivation JSON has no name, and its __json has none either")
		}
		d.Name = attrs.Name
	default:
		return nil, fmt.Errorf("derivation JSON has neither 'name' nor 'env.name'")
	}
	if err := CheckName(d.Name); err != nil {
		return nil, fmt.Errorf("derivation JSON: %w", err)
	}
	if j.System == nil || j.Builder == nil {
		return nil, fmt.Errorf("derivation '%s' in JSON lacks 'system' or 'builder'", d.Name)
	}
	d.Platform, d.Builder = *j.System, *j.Builder
	if len(j.Outputs) == 0 {
		return nil, fmt.Errorf("derivation '%s' in JSON has no outputs", d.Name)
	}
	for name, o := range j.Outputs {
		if name == "" || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("derivation '%s' has an invalid output name '%s'", d.Name, name)
		}
		out := DerivationOutput{HashAlgo: o.HashAlgo, Hash: o.Hash}
		switch o.Method {
		case "", "flat":
		case "nar":
			if !strings.HasPrefix(out.HashAlgo, "r:") {
				out.HashAlgo = "r:" + out.HashAlgo
			}
		default:
			return nil, fmt.Errorf("output '%s' of derivation '%s' has unsupported method '%s'", name, d.Name, o.Method)
		}
		if (out.HashAlgo == "") != (out.Hash == "") {
			return nil, fmt.Errorf("output '%s' of derivation '%s' has a hash algorithm or a hash but not both", name, d.Name)
		}
		if out.IsFixed() {
			_, h, err := out.FixedHash()
			if err != nil {
				return nil, fmt.Errorf("output '%s' of derivation '%s': %w", name, d.Name, err)
			}
			// The .drv always holds base16, whatever form was given.
			out.Hash = h.Base16()
		}
		if o.Path != "" {
			if out.Path, err = dir.Parse(o.Path); err != nil {
				return nil, fmt.Errorf("output '%s' of derivation '%s': %w", name, d.Name, err)
			}
		}
		d.Outputs[name] = out
	}
	for _, s := range j.InputSrcs {
		p, err := dir.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("input source of derivation '%s': %w", d.Name, err)
		}
		d.InputSrcs = append(d.InputSrcs, p)
	}
	for s, v := range j.InputDrvs {
		p, err := dir.Parse(s)
		if err != nil || !p.IsDerivation() {
			return nil, fmt.Errorf("input derivation '%s' of derivation '%s' is not a .drv store path", s, d.Name)
		}
		outs, err := parseInputOutputs(v)
		if err != nil {
			return nil, fmt.Errorf("input derivation '%s' of derivation '%s': %w", s, d.Name, err)
		}
		d.InputDrvs[p] = outs
	}
	return d, nil
}

// parseInputOutputs reads the outputs wanted of an input derivation: a list
// (Nix ≤ 2.18) or {"outputs": [...], "dynamicOutputs": {}} (newer Nix).
func parseInputOutputs(v json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(v, &list); err == nil {
		return list, nil
	}
	var obj struct {
		Outputs        []string                   `json:"outputs"`
		DynamicOutputs map[string]json.RawMessage `json:"dynamicOutputs"`
	}
	if err := json.Unmarshal(v, &obj); err != nil {
		return nil, fmt.Errorf("expected a list of output names")
	}
	if len(obj.DynamicOutputs) > 0 {
		return nil, fmt.Errorf("dynamic derivation outputs are not supported")
	}
	return obj.Outputs, nil
}

// decodeStrict returns the single JSON value in data, rejecting trailing
// data after it.
func decodeStrict(data []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return raw, nil
}
