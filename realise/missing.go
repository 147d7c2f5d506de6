package realise

import (
	"github.com/storefs/storefs/store"
)

// Missing lists the derivations that realising targets would build, inputs
// first (what Nix prints as "these derivations will be built"). It walks
// the derivation graph from the targets, stopping at derivations whose
// wanted outputs are valid.
func (w *Worker) Missing(targets []Target) ([]store.Path, error) {
	var order []store.Path
	seen := map[store.Path]bool{}
	var visit func(drv store.Path, wanted []string) error
	visit = func(drv store.Path, wanted []string) error {
		if seen[drv] {
			return nil
		}
		d, err := w.st.ReadDerivation(drv)
		if err != nil {
			return err
		}
		want := map[string]bool(nil)
		if len(wanted) > 0 {
			want = map[string]bool{}
			for _, o := range wanted {
				want[o] = true
			}
		}
		outs := map[string]store.Path{}
		for n, o := range d.Outputs {
			outs[n] = o.Path
		}
		ok, err := w.outputsValid(outs, want)
		if err != nil {
			return err
		}
		seen[drv] = true
		if ok {
			return nil
		}
		inputs := make([]store.Path, 0, len(d.InputDrvs))
		for p := range d.InputDrvs {
			inputs = append(inputs, p)
		}
		store.SortPaths(inputs)
		for _, p := range inputs {
			if err := visit(p, d.InputDrvs[p]); err != nil {
				return err
			}
		}
		order = append(order, drv)
		return nil
	}
	for _, t := range targets {
		drv, wanted := t.Path, t.Outputs
		if !drv.IsDerivation() {
			if ok, err := w.st.IsValid(drv); err != nil || ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			derivers, err := w.st.Derivers(drv)
			if err != nil {
				return nil, err
			}
			if len(derivers) == 0 {
				continue
			}
			drv, wanted = derivers[0].Drv, []string{derivers[0].Output}
		}
		if err := visit(drv, wanted); err != nil {
			return nil, err
		}
	}
	return order, nil
}
