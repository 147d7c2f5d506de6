package realise

import (
	"context"

	"github.com/storefs/storefs/store"
)

// Missing lists the derivations that realising targets would build, inputs
// first, and the paths it would fetch from substituters (what Nix prints
// as "these derivations will be built" and "these paths will be
// fetched"). It walks the derivation graph from the targets, stopping at
// derivations whose wanted outputs are valid or can be substituted.
func (w *Worker) Missing(ctx context.Context, targets []Target) (build, fetch []store.Path, err error) {
	var order []store.Path
	seen := map[store.Path]bool{}
	fetchSet := store.NewPathSet()
	// substitutable reports whether every path is valid or in a cache
	// with its references, noting the ones to fetch. The narinfos of each
	// level of references are asked for at once, as a cache may be far.
	substitutable := func(ps []store.Path) bool {
		if len(w.opts.Substituters) == 0 {
			return false
		}
		missing := store.NewPathSet()
		level := ps
		for len(level) > 0 {
			var ask []store.Path
			for _, p := range level {
				if missing.Has(p) || fetchSet.Has(p) {
					continue
				}
				if ok, _ := w.st.IsValid(p); !ok {
					ask = append(ask, p)
					missing.Add(p)
				}
			}
			infos := w.substituteInfos(ctx, ask)
			level = nil
			for _, p := range ask {
				ni := infos[p]
				if ni == nil {
					return false
				}
				level = append(level, ni.References...)
			}
		}
		for p := range missing {
			fetchSet.Add(p)
		}
		return true
	}
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
		var wantedPaths []store.Path
		for n, p := range outs {
			if want == nil || want[n] {
				wantedPaths = append(wantedPaths, p)
			}
		}
		if attrs, err := d.Attrs(); err == nil {
			if allowed, _ := attrs.SubstitutesAllowed(); allowed && substitutable(wantedPaths) {
				return nil
			}
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
					return nil, nil, err
				}
				continue
			}
			if substitutable([]store.Path{drv}) {
				continue
			}
			derivers, err := w.st.Derivers(drv)
			if err != nil {
				return nil, nil, err
			}
			if len(derivers) == 0 {
				continue
			}
			drv, wanted = derivers[0].Drv, []string{derivers[0].Output}
		}
		if err := visit(drv, wanted); err != nil {
			return nil, nil, err
		}
	}
	return order, fetchSet.Sorted(), nil
}
