package realise

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/storefs/storefs/store"
)

// sandboxBuildTop is the build directory as builders see it.
const sandboxBuildTop = "/build"

// buildEnv is what the builder gets from its derivation: variables and
// files in the build directory. The sandbox adds Nix's fixed variables.
type buildEnv struct {
	env   map[string]string
	files map[string][]byte
}

// makeBuildEnv ports Nix 2.8's initTmpDir, writeStructuredAttrs and the
// exportReferencesGraph part of startBuilder. inputs is the input closure.
func (w *Worker) makeBuildEnv(drv *store.Derivation, attrs *store.Attrs, inputs store.PathSet) (*buildEnv, error) {
	be := &buildEnv{env: map[string]string{}, files: map[string][]byte{}}
	if attrs.Structured != nil {
		if err := w.writeStructuredAttrs(be, drv, attrs, inputs); err != nil {
			return nil, err
		}
		return be, nil
	}
	// Attributes in passAsFile go into files named after their hash, with
	// "<name>Path" pointing there, so huge values do not hit the
	// environment size limit.
	passAsFile := map[string]bool{}
	for _, n := range attrs.PassAsFile() {
		passAsFile[n] = true
	}
	for k, v := range drv.Env {
		if !passAsFile[k] {
			be.env[k] = v
			continue
		}
		fn := ".attr-" + store.HashString(store.SHA256, k).Base32()
		be.files[fn] = []byte(v)
		be.env[k+"Path"] = sandboxBuildTop + "/" + fn
	}
	graphs, err := attrs.ExportReferencesGraph()
	if err != nil {
		return nil, err
	}
	for name, paths := range graphs {
		if !exportFileName.MatchString(name) {
			return nil, fmt.Errorf("invalid file name '%s' in 'exportReferencesGraph'", name)
		}
		closure, err := w.exportReferences(paths, inputs)
		if err != nil {
			return nil, err
		}
		reg, err := w.validityRegistration(closure)
		if err != nil {
			return nil, err
		}
		be.files[name] = []byte(reg)
	}
	return be, nil
}

// exportReferences is the closure of paths, which must be in the input
// closure of the build, with the closures of the outputs of the
// derivations in it (Nix's Store::exportReferences).
func (w *Worker) exportReferences(paths []string, inputs store.PathSet) ([]store.Path, error) {
	var roots []store.Path
	for _, s := range paths {
		p, err := w.st.Dir.ToStorePath(s)
		if err != nil {
			return nil, fmt.Errorf("'exportReferencesGraph' contains a non-store path '%s'", s)
		}
		if !inputs.Has(p) {
			return nil, fmt.Errorf("cannot export references of path '%s' because it is not in the input closure of the derivation", p)
		}
		roots = append(roots, p)
	}
	closure, err := w.st.Closure(roots)
	if err != nil {
		return nil, err
	}
	// The outputs of derivations in the graph come with their closures,
	// as in Nix (for builds that take all build-time dependencies, such
	// as an installer image).
	var outs []store.Path
	for _, p := range closure {
		if !p.IsDerivation() {
			continue
		}
		drv, err := w.st.ReadDerivation(p)
		if err != nil {
			return nil, err
		}
		for _, o := range drv.Outputs {
			outs = append(outs, o.Path)
		}
	}
	if len(outs) == 0 {
		return closure, nil
	}
	more, err := w.st.Closure(outs)
	if err != nil {
		return nil, fmt.Errorf("exporting the references of the outputs of derivations in 'exportReferencesGraph': %w", err)
	}
	set := store.NewPathSet()
	for _, p := range append(closure, more...) {
		set.Add(p)
	}
	return set.Sorted(), nil
}

// validityRegistration is Nix's makeValidityRegistration without hashes
// and derivers: each path, an empty deriver line, its reference count and
// references.
func (w *Worker) validityRegistration(paths []store.Path) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		info, err := w.st.PathInfo(p)
		if err != nil {
			return "", err
		}
		refs := append([]store.Path(nil), info.References...)
		store.SortPaths(refs)
		fmt.Fprintf(&b, "%s\n\n%d\n", p, len(refs))
		for _, r := range refs {
			fmt.Fprintf(&b, "%s\n", r)
		}
	}
	return b.String(), nil
}

// writeStructuredAttrs writes .attrs.json and .attrs.sh: the structured
// attributes plus "outputs" (name → path) and, for each
// exportReferencesGraph entry, the closure's path infos.
func (w *Worker) writeStructuredAttrs(be *buildEnv, drv *store.Derivation, attrs *store.Attrs, inputs store.PathSet) error {
	js := make(map[string]any, len(attrs.Structured)+1)
	for k, v := range attrs.Structured {
		js[k] = v
	}
	outputs := map[string]any{}
	for name, o := range drv.Outputs {
		outputs[name] = string(o.Path)
	}
	js["outputs"] = outputs
	if e, ok := attrs.Structured["exportReferencesGraph"].(map[string]any); ok {
		for key, v := range e {
			var paths []string
			switch l := v.(type) {
			case []any:
				for _, p := range l {
					s, ok := p.(string)
					if !ok {
						return fmt.Errorf("exportReferencesGraph.%s of derivation '%s' must be a list of strings", key, drv.Name)
					}
					paths = append(paths, s)
				}
			case string:
				paths = []string{l}
			default:
				return fmt.Errorf("exportReferencesGraph.%s of derivation '%s' must be a list of strings", key, drv.Name)
			}
			closure, err := w.exportReferences(paths, inputs)
			if err != nil {
				return err
			}
			infos, err := w.pathInfosJSON(closure)
			if err != nil {
				return err
			}
			js[key] = infos
		}
	}
	data, err := store.MarshalJSON(js)
	if err != nil {
		return fmt.Errorf("encoding structured attributes of '%s': %w", drv.Name, err)
	}
	be.files[".attrs.json"] = data
	be.files[".attrs.sh"] = []byte(structuredAttrsShell(js))
	// Nix 2.8 points these at the host's temporary directory; the path
	// inside the sandbox is what a builder can actually open.
	be.env["NIX_ATTRS_JSON_FILE"] = sandboxBuildTop + "/.attrs.json"
	be.env["NIX_ATTRS_SH_FILE"] = sandboxBuildTop + "/.attrs.sh"
	return nil
}

// pathInfosJSON is Nix's pathInfoToJSON without impure info, with
// closure sizes and nix-base32 hashes, as exportReferencesGraph writes it
// into .attrs.json.
func (w *Worker) pathInfosJSON(paths []store.Path) ([]any, error) {
	var out []any
	for _, p := range paths {
		info, err := w.st.PathInfo(p)
		if err != nil {
			return nil, err
		}
		closure, err := w.st.Closure([]store.Path{p})
		if err != nil {
			return nil, err
		}
		var size uint64
		for _, q := range closure {
			qi, err := w.st.PathInfo(q)
			if err != nil {
				return nil, err
			}
			size += qi.NARSize
		}
		refs := []any{}
		sorted := append([]store.Path(nil), info.References...)
		store.SortPaths(sorted)
		for _, r := range sorted {
			refs = append(refs, string(r))
		}
		obj := map[string]any{
			"path":        string(p),
			"narHash":     info.NARHash.String(),
			"narSize":     json.Number(strconv.FormatUint(info.NARSize, 10)),
			"references":  refs,
			"closureSize": json.Number(strconv.FormatUint(size, 10)),
		}
		if info.CA != "" {
			obj["ca"] = info.CA
		}
		out = append(out, obj)
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}

var shVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// exportFileName is what Nix 2.8 allows as an exportReferencesGraph file name.
var exportFileName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// structuredAttrsShell is Nix's writeStructuredAttrsShell: bash
// declarations of the attributes that are simple values, lists of simple
// values or attribute sets of simple values.
func structuredAttrsShell(js map[string]any) string {
	keys := make([]string, 0, len(js))
	for k := range js {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, key := range keys {
		if !shVarName.MatchString(key) {
			continue
		}
		value := js[key]
		if s, ok := simpleShellValue(value); ok {
			fmt.Fprintf(&b, "declare %s=%s\n", key, s)
			continue
		}
		switch v := value.(type) {
		case []any:
			var s2 strings.Builder
			good := true
			for _, e := range v {
				s3, ok := simpleShellValue(e)
				if !ok {
					good = false
					break
				}
				s2.WriteString(s3)
				s2.WriteByte(' ')
			}
			if good {
				fmt.Fprintf(&b, "declare -a %s=(%s)\n", key, s2.String())
			}
		case map[string]any:
			k2s := make([]string, 0, len(v))
			for k2 := range v {
				k2s = append(k2s, k2)
			}
			sort.Strings(k2s)
			var s2 strings.Builder
			good := true
			for _, k2 := range k2s {
				s3, ok := simpleShellValue(v[k2])
				if !ok {
					good = false
					break
				}
				fmt.Fprintf(&s2, "[%s]=%s ", shellEscape(k2), s3)
			}
			if good {
				fmt.Fprintf(&b, "declare -A %s=(%s)\n", key, s2.String())
			}
		}
	}
	return b.String()
}

// simpleShellValue renders strings, integral numbers, null and booleans.
func simpleShellValue(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return shellEscape(x), true
	case json.Number:
		// Nix reads the number as a float and prints it as an int when
		// it is integral; other numbers are not simple.
		f, err := strconv.ParseFloat(x.String(), 32)
		if err != nil || math.Ceil(f) != f {
			return "", false
		}
		return strconv.FormatInt(int64(f), 10), true
	case nil:
		return "''", true
	case bool:
		if x {
			return "1", true
		}
		return "", true
	}
	return "", false
}

func shellEscape(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
