package store

import (
	"bytes"
	"fmt"
	"strings"
)

// MaxDerivationSize bounds the .drv files storefs parses; real ones are at
// most a few megabytes.
const MaxDerivationSize = 64 << 20

// ParseDerivation parses the ATerm text of a .drv file with the given
// derivation name. Store paths in it must lie in dir. Errors name the line
// and byte offset and what was expected there.
func ParseDerivation(dir Dir, text []byte, name string) (*Derivation, error) {
	if len(text) > MaxDerivationSize {
		return nil, fmt.Errorf("derivation is %d bytes, more than the limit of %d", len(text), MaxDerivationSize)
	}
	p := &atermParser{s: text, dir: dir}
	d, err := p.derivation()
	if err != nil {
		return nil, err
	}
	d.Name = name
	return d, nil
}

type atermParser struct {
	s   []byte
	pos int
	dir Dir
}

// errorf reports a parse error at the current position.
func (p *atermParser) errorf(format string, args ...any) error {
	line := 1 + bytes.Count(p.s[:p.pos], []byte{'\n'})
	return fmt.Errorf("parsing derivation at line %d, offset %d: %s", line, p.pos, fmt.Sprintf(format, args...))
}

func (p *atermParser) expect(lit string) error {
	if !bytes.HasPrefix(p.s[p.pos:], []byte(lit)) {
		got := "end of input"
		if p.pos < len(p.s) {
			got = fmt.Sprintf("%q", p.s[p.pos])
		}
		return p.errorf("expected '%s', got %s", lit, got)
	}
	p.pos += len(lit)
	return nil
}

// peek reports whether the next byte is c.
func (p *atermParser) peek(c byte) bool { return p.pos < len(p.s) && p.s[p.pos] == c }

func (p *atermParser) str() (string, error) {
	if err := p.expect(`"`); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		if p.pos >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.s) {
				return "", p.errorf("unterminated escape in string")
			}
			e := p.s[p.pos]
			p.pos++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\\':
				b.WriteByte(e)
			default:
				p.pos -= 2
				return "", p.errorf("invalid escape '\\%c' in string", e)
			}
		default:
			b.WriteByte(c)
		}
	}
}

func (p *atermParser) path() (Path, error) {
	start := p.pos
	s, err := p.str()
	if err != nil {
		return "", err
	}
	sp, err := p.dir.Parse(s)
	if err != nil {
		p.pos = start
		return "", p.errorf("expected a store path: %v", err)
	}
	return sp, nil
}

// list parses "[" item ("," item)* "]".
func (p *atermParser) list(item func() error) error {
	if err := p.expect("["); err != nil {
		return err
	}
	if p.peek(']') {
		p.pos++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.peek(',') {
			p.pos++
			continue
		}
		return p.expect("]")
	}
}

func (p *atermParser) strings() ([]string, error) {
	out := []string{}
	err := p.list(func() error {
		s, err := p.str()
		out = append(out, s)
		return err
	})
	return out, err
}

func (p *atermParser) derivation() (*Derivation, error) {
	d := &Derivation{
		Outputs:   map[string]DerivationOutput{},
		InputDrvs: map[Path][]string{},
		Env:       map[string]string{},
	}
	if err := p.expect("Derive("); err != nil {
		return nil, err
	}
	err := p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		start := p.pos
		name, err := p.str()
		if err != nil {
			return err
		}
		if _, dup := d.Outputs[name]; dup {
			p.pos = start
			return p.errorf("duplicate output '%s'", name)
		}
		if err := p.expect(","); err != nil {
			return err
		}
		var o DerivationOutput
		if p.peek('"') && bytes.HasPrefix(p.s[p.pos:], []byte(`""`)) {
			return p.errorf("output '%s' has no path (content-addressed derivations are not supported)", name)
		}
		if o.Path, err = p.path(); err != nil {
			return err
		}
		for _, f := range []*string{&o.HashAlgo, &o.Hash} {
			if err := p.expect(","); err != nil {
				return err
			}
			if *f, err = p.str(); err != nil {
				return err
			}
		}
		if (o.HashAlgo == "") != (o.Hash == "") {
			return p.errorf("output '%s' has a hash algorithm or a hash but not both", name)
		}
		if o.IsFixed() {
			if _, _, err := o.FixedHash(); err != nil {
				return p.errorf("output '%s': %v", name, err)
			}
		}
		d.Outputs[name] = o
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if len(d.Outputs) == 0 {
		return nil, p.errorf("derivation has no outputs")
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	err = p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		start := p.pos
		drv, err := p.path()
		if err != nil {
			return err
		}
		if !drv.IsDerivation() {
			p.pos = start
			return p.errorf("input derivation '%s' is not a .drv path", drv)
		}
		if _, dup := d.InputDrvs[drv]; dup {
			p.pos = start
			return p.errorf("duplicate input derivation '%s'", drv)
		}
		if err := p.expect(","); err != nil {
			return err
		}
		outs, err := p.strings()
		if err != nil {
			return err
		}
		d.InputDrvs[drv] = outs
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	d.InputSrcs = []Path{}
	err = p.list(func() error {
		src, err := p.path()
		d.InputSrcs = append(d.InputSrcs, src)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, f := range []*string{&d.Platform, &d.Builder} {
		if err := p.expect(","); err != nil {
			return nil, err
		}
		if *f, err = p.str(); err != nil {
			return nil, err
		}
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Args, err = p.strings(); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	err = p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		start := p.pos
		k, err := p.str()
		if err != nil {
			return err
		}
		if _, dup := d.Env[k]; dup {
			p.pos = start
			return p.errorf("duplicate environment variable '%s'", k)
		}
		if err := p.expect(","); err != nil {
			return err
		}
		v, err := p.str()
		if err != nil {
			return err
		}
		d.Env[k] = v
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.pos != len(p.s) {
		return nil, p.errorf("unexpected data after the derivation")
	}
	return d, nil
}
