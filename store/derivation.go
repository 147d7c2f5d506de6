package store

import (
	"fmt"
	"sort"
	"strings"
)

// DerivationOutput is one output of a derivation. Input-addressed outputs
// have only a Path; fixed-output ones also have HashAlgo ("sha256", or
// "r:sha256" for a recursive/NAR hash) and Hash (base16), as in the .drv.
type DerivationOutput struct {
	Path     Path
	HashAlgo string
	Hash     string
}

// IsFixed reports whether the output is content-addressed by a fixed hash.
func (o DerivationOutput) IsFixed() bool { return o.Hash != "" }

// FixedHash parses the output's declared hash and whether it is recursive.
func (o DerivationOutput) FixedHash() (recursive bool, h Hash, err error) {
	algo := o.HashAlgo
	if strings.HasPrefix(algo, "r:") {
		recursive, algo = true, algo[2:]
	}
	a, err := ParseHashAlgo(algo)
	if err != nil {
		return false, Hash{}, err
	}
	h, err = ParseHashAny(o.Hash, a)
	return recursive, h, err
}

// Derivation is a parsed .drv file: how to build some outputs.
type Derivation struct {
	// Name is the derivation's name (the .drv path's name without ".drv").
	// It is not part of the ATerm text.
	Name      string
	Outputs   map[string]DerivationOutput
	InputDrvs map[Path][]string
	InputSrcs []Path
	Platform  string
	Builder   string
	Args      []string
	Env       map[string]string
}

// IsFixedOutput reports whether this is a fixed-output derivation: a single
// output "out" with a declared hash.
func (d *Derivation) IsFixedOutput() bool {
	o, ok := d.Outputs["out"]
	return len(d.Outputs) == 1 && ok && o.IsFixed()
}

// OutputNames returns the output names in order.
func (d *Derivation) OutputNames() []string {
	names := make([]string, 0, len(d.Outputs))
	for n := range d.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// References are the store paths a .drv file refers to: its input
// derivations and input sources.
func (d *Derivation) References() []Path {
	set := NewPathSet(d.InputSrcs...)
	for p := range d.InputDrvs {
		set.Add(p)
	}
	return set.Sorted()
}

// ATerm prints the derivation as Nix writes .drv files.
func (d *Derivation) ATerm() string { return d.unparse(false, nil) }

// unparse prints the ATerm. With maskOutputs, output paths and the
// environment variables named after outputs are blanked (for computing the
// output paths themselves). inputs, when non-nil, replaces InputDrvs by a
// map of arbitrary strings (hashDerivationModulo puts hashes there).
func (d *Derivation) unparse(maskOutputs bool, inputs map[string][]string) string {
	var b strings.Builder
	b.Grow(1024)
	b.WriteString("Derive([")
	for i, name := range d.OutputNames() {
		o := d.Outputs[name]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		writeATermString(&b, name)
		b.WriteByte(',')
		if maskOutputs {
			writeATermString(&b, "")
		} else {
			writeATermString(&b, string(o.Path))
		}
		b.WriteByte(',')
		writeATermString(&b, o.HashAlgo)
		b.WriteByte(',')
		writeATermString(&b, o.Hash)
		b.WriteByte(')')
	}
	b.WriteString("],[")
	if inputs == nil {
		inputs = make(map[string][]string, len(d.InputDrvs))
		for p, outs := range d.InputDrvs {
			inputs[string(p)] = outs
		}
	}
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		writeATermString(&b, k)
		b.WriteString(",[")
		outs := append([]string(nil), inputs[k]...)
		sort.Strings(outs)
		for j, o := range outs {
			if j > 0 {
				b.WriteByte(',')
			}
			writeATermString(&b, o)
		}
		b.WriteString("])")
	}
	b.WriteString("],[")
	srcs := append([]Path(nil), d.InputSrcs...)
	SortPaths(srcs)
	for i, s := range srcs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeATermString(&b, string(s))
	}
	b.WriteString("],")
	writeATermString(&b, d.Platform)
	b.WriteByte(',')
	writeATermString(&b, d.Builder)
	b.WriteString(",[")
	for i, a := range d.Args {
		if i > 0 {
			b.WriteByte(',')
		}
		writeATermString(&b, a)
	}
	b.WriteString("],[")
	envKeys := make([]string, 0, len(d.Env))
	for k := range d.Env {
		envKeys = append(envKeys, k)
	}
	sort.Strings(envKeys)
	for i, k := range envKeys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		writeATermString(&b, k)
		b.WriteByte(',')
		v := d.Env[k]
		if maskOutputs {
			if _, isOut := d.Outputs[k]; isOut {
				v = ""
			}
		}
		writeATermString(&b, v)
		b.WriteByte(')')
	}
	b.WriteString("])")
	return b.String()
}

func writeATermString(b *strings.Builder, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		b.WriteString(s[start:i])
		b.WriteString(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// NameFromDrvPath is the derivation name of a .drv path.
func NameFromDrvPath(p Path) (string, error) {
	if !p.IsDerivation() {
		return "", fmt.Errorf("'%s' is not a derivation path", p)
	}
	return strings.TrimSuffix(p.Name(), ".drv"), nil
}
