package store

import (
	"fmt"
)

// InputHasher returns hashDerivationModulo of an input derivation, per
// output. Store.HashDerivationModulo is one, reading .drv files from the
// store and remembering results.
type InputHasher func(drvPath Path) (map[string]Hash, error)

// HashModulo is Nix's hashDerivationModulo: a hash of the derivation that
// does not change when a fixed-output dependency is built differently.
// Fixed-output derivations hash to "fixed:out:<algo>:<hash>:<path>" per
// output; others hash their ATerm with each input derivation replaced by
// its own hash (recursively, through inputHash). With maskOutputs the
// output paths are blanked, which is how the output paths themselves are
// computed.
func (d *Derivation) HashModulo(dir Dir, maskOutputs bool, inputHash InputHasher) (map[string]Hash, error) {
	if d.IsFixedOutput() {
		o := d.Outputs["out"]
		recursive, h, err := o.FixedHash()
		if err != nil {
			return nil, fmt.Errorf("derivation '%s': %w", d.Name, err)
		}
		method := ""
		if recursive {
			method = "r:"
		}
		fp := "fixed:out:" + method + h.Base16WithAlgo() + ":" + string(o.Path)
		return map[string]Hash{"out": HashString(SHA256, fp)}, nil
	}
	inputs := make(map[string][]string, len(d.InputDrvs))
	for drvPath, outs := range d.InputDrvs {
		hashes, err := inputHash(drvPath)
		if err != nil {
			return nil, err
		}
		for _, out := range outs {
			h, ok := hashes[out]
			if !ok {
				return nil, fmt.Errorf("no hash for output '%s' of derivation '%s'", out, drvPath)
			}
			k := h.Base16()
			inputs[k] = append(inputs[k], out)
		}
	}
	h := HashString(SHA256, d.unparse(maskOutputs, inputs))
	out := make(map[string]Hash, len(d.Outputs))
	for name := range d.Outputs {
		out[name] = h
	}
	return out, nil
}

// ComputeOutputPaths computes where each output must go.
func (d *Derivation) ComputeOutputPaths(dir Dir, inputHash InputHasher) (map[string]Path, error) {
	if err := CheckName(d.Name); err != nil {
		return nil, fmt.Errorf("derivation name: %w", err)
	}
	paths := make(map[string]Path, len(d.Outputs))
	if d.IsFixedOutput() {
		recursive, h, err := d.Outputs["out"].FixedHash()
		if err != nil {
			return nil, fmt.Errorf("derivation '%s': %w", d.Name, err)
		}
		p, err := dir.MakeFixedOutputPath(d.Name, recursive, h, nil, false)
		if err != nil {
			return nil, err
		}
		paths["out"] = p
		return paths, nil
	}
	for name, o := range d.Outputs {
		if o.IsFixed() {
			return nil, fmt.Errorf("derivation '%s' has a fixed-output hash on output '%s', but only a single output 'out' may have one", d.Name, name)
		}
	}
	hashes, err := d.HashModulo(dir, true, inputHash)
	if err != nil {
		return nil, err
	}
	for name := range d.Outputs {
		p, err := dir.MakeOutputPath(name, hashes[name], d.Name)
		if err != nil {
			return nil, fmt.Errorf("output '%s' of derivation '%s': %w", name, d.Name, err)
		}
		paths[name] = p
	}
	return paths, nil
}

// CheckOutputs verifies that the declared output paths and the environment
// variables named after the outputs are the computed ones, as Nix does
// before accepting a .drv.
func (d *Derivation) CheckOutputs(dir Dir, inputHash InputHasher) error {
	paths, err := d.ComputeOutputPaths(dir, inputHash)
	if err != nil {
		return err
	}
	for name, want := range paths {
		if got := d.Outputs[name].Path; got != want {
			return fmt.Errorf("derivation '%s' has incorrect output '%s', should be '%s'", d.Name, got, want)
		}
		if got := d.Env[name]; Path(got) != want {
			return fmt.Errorf("derivation '%s' has incorrect environment variable '%s', should be '%s'", d.Name, name, want)
		}
	}
	return nil
}

// FillOutputs computes and sets the output paths and their environment
// variables where they are empty, as `nix derivation add` does; paths that
// are given must then be right.
func (d *Derivation) FillOutputs(dir Dir, inputHash InputHasher) error {
	// Every output has its variable, as in a derivation from Nix's
	// evaluator; the masked hash then ignores the values, so computing
	// with whatever is there now gives the right answer.
	for name := range d.Outputs {
		if _, ok := d.Env[name]; !ok {
			d.Env[name] = ""
		}
	}
	paths, err := d.ComputeOutputPaths(dir, inputHash)
	if err != nil {
		return err
	}
	for name, p := range paths {
		o := d.Outputs[name]
		if o.Path == "" {
			o.Path = p
			d.Outputs[name] = o
		}
		if d.Env[name] == "" {
			d.Env[name] = string(p)
		}
	}
	return d.CheckOutputs(dir, inputHash)
}
