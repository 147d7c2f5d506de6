package store

import (
	"context"
	"fmt"
)

// AddDerivation writes d as a .drv text path and registers it, like `nix
// derivation add`: every input derivation and source must be valid, empty
// output paths (and their environment variables) are filled in, and the
// declared ones must be right. The output index learns d's outputs. Adding
// a derivation that is valid already returns its path.
func (s *Store) AddDerivation(ctx context.Context, d *Derivation) (Path, error) {
	for p, outs := range d.InputDrvs {
		in, err := s.ReadDerivation(p)
		if err != nil {
			return "", fmt.Errorf("input derivation of '%s': %w", d.Name, err)
		}
		for _, o := range outs {
			if _, ok := in.Outputs[o]; !ok {
				return "", fmt.Errorf("input derivation '%s' of '%s' has no output '%s'", p, d.Name, o)
			}
		}
	}
	for _, p := range d.InputSrcs {
		ok, err := s.IsValid(p)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("input source '%s' of derivation '%s': %w", p, d.Name, ErrNotValid)
		}
	}
	if err := d.FillOutputs(s.Dir, s.HashDerivationModulo); err != nil {
		return "", err
	}
	return s.AddText(ctx, d.Name+".drv", []byte(d.ATerm()), d.References())
}
