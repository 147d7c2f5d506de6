package nar_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/storefs/storefs/store/nar"
	"github.com/storefs/storefs/store/nar/nartest"
)

func TestReader_Next_Sample(t *testing.T) {
	data := nartest.NAR(nartest.Sample())
	want := []entry{
		{Header: nar.Header{Path: "", Type: nar.TypeDirectory}},
		{Header: nar.Header{Path: "bin", Type: nar.TypeDirectory}},
		{Header: nar.Header{Path: "bin/hello", Type: nar.TypeRegular, Executable: true, Size: 21}, Contents: "#!/bin/sh\necho hello\n"},
		{Header: nar.Header{Path: "bin/hi", Type: nar.TypeSymlink, LinkTarget: "hello"}},
		{Header: nar.Header{Path: "eight", Type: nar.TypeRegular, Size: 8}, Contents: "12345678"},
		{Header: nar.Header{Path: "empty", Type: nar.TypeDirectory}},
		{Header: nar.Header{Path: "empty-file", Type: nar.TypeRegular}},
		{Header: nar.Header{Path: "lib", Type: nar.TypeDirectory}},
		{Header: nar.Header{Path: "lib/abs", Type: nar.TypeSymlink, LinkTarget: "/nix/store/00000000000000000000000000000000-x/lib"}},
		{Header: nar.Header{Path: "lib/dangling", Type: nar.TypeSymlink, LinkTarget: "../nowhere"}},
		{Header: nar.Header{Path: "lib/data", Type: nar.TypeRegular, Size: 20}, Contents: "some data\x00with a NUL"},
	}
	// However the source splits its data, the Reader sees the same nodes.
	sources := []struct {
		name string
		r    func() io.Reader
	}{
		{"Whole", func() io.Reader { return bytes.NewReader(data) }},
		{"OneByte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
		{"Half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }},
		{"DataErr", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			got, err := readAll(src.r())
			if err != nil {
				t.Fatalf("reading the sample = %v, want nil", err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d nodes, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("node %d = %+v, want %+v", i, got[i], want[i])
				}
			}
			if enc := encode(got); !bytes.Equal(enc, data) {
				t.Errorf("encoding the nodes read: %s", firstDiff(enc, data))
			}
		})
	}
}

func TestReader_Next_SkipsContents(t *testing.T) {
	// Contents larger than the Reader's buffer, read partly or not at all.
	big := strings.Repeat("x", 200<<10+3)
	data := nartest.NAR(nartest.Dir(
		nartest.E("a", nartest.File(big)),
		nartest.E("b", nartest.File(big)),
		nartest.E("c", nartest.File("end")),
	))
	r := nar.NewReader(bytes.NewReader(data))
	for _, want := range []string{"", "a", "b", "c"} {
		h, err := r.Next()
		if err != nil || h.Path != want {
			t.Fatalf("Next() = %+v, %v, want path %q", h, err, want)
		}
		if h.Path == "a" {
			p := make([]byte, 10)
			if n, err := r.Read(p); n == 0 || err != nil {
				t.Fatalf("Read = %d, %v, want data", n, err)
			}
		}
		if h.Path == "c" {
			if b, err := io.ReadAll(r); string(b) != "end" || err != nil {
				t.Fatalf("ReadAll = %q, %v, want %q, nil", b, err, "end")
			}
		}
	}
	for range 2 {
		if h, err := r.Next(); err != io.EOF {
			t.Fatalf("Next() at the end = %+v, %v, want io.EOF", h, err)
		}
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v, want 0, io.EOF", n, err)
	}
}

func TestReader_Read_NotAFile(t *testing.T) {
	r := nar.NewReader(bytes.NewReader(nartest.NAR(nartest.Dir())))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read before Next = %d, %v, want 0, io.EOF", n, err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read of a directory = %d, %v, want 0, io.EOF", n, err)
	}
}

func TestReader_Next_Malicious(t *testing.T) {
	for _, tc := range nartest.Malicious() {
		t.Run(tc.Name, func(t *testing.T) {
			r := nar.NewReader(bytes.NewReader(tc.Data))
			var err error
			for err == nil {
				_, err = r.Next()
			}
			if tc.Trailing {
				if err != io.EOF {
					t.Errorf("reading %s = %v, want io.EOF: the Reader does not look past the end", tc.Why, err)
				}
				return
			}
			var fe *nar.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("reading %s = %v, want a *nar.FormatError", tc.Why, err)
			}
			t.Logf("%s: %v", tc.Why, err)
			if _, again := r.Next(); again != err {
				t.Errorf("Next after %v = %v, want the same error", err, again)
			}
			if strings.HasPrefix(tc.Name, "truncated-") || tc.Name == "huge-size" || tc.Name == "empty" {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("reading %s = %v, want an error wrapping io.ErrUnexpectedEOF", tc.Why, err)
				}
			}
		})
	}
}

func TestReader_Next_Errors(t *testing.T) {
	// The messages say what was expected and where.
	want := map[string]string{
		"dotdot-file":          `invalid nar at byte 128: entry name ".." is not allowed`,
		"slash-inner":          `invalid nar at byte 296: entry name "a/b" contains a slash`,
		"nul-name":             `entry name "a\x00b" contains NUL`,
		"empty-name":           "entry name is empty",
		"duplicate-file":       `duplicate entry "a"`,
		"unsorted-case":        `entry "B" after "a": entries must be sorted by name`,
		"unsorted-deep":        `(path "d"): entry "x" after "y"`,
		"symlink-then-file":    `duplicate entry "a"`,
		"bad-magic":            `invalid nar at byte 0: expected "nix-archive-1", got "nix-archive-2"`,
		"unknown-type":         `expected node type "regular", "symlink" or "directory", got "fifo"`,
		"unknown-type-nested":  `(path "a"): expected node type`,
		"executable-value":     `expected "" after "executable", got "yes"`,
		"padding-name":         "non-zero padding after entry name",
		"padding-contents":     "invalid nar at byte 99: non-zero padding after file contents",
		"huge-name-length":     "expected entry name, got a string of 1152921504606846976 bytes (at most 255 allowed)",
		"long-target":          "expected symlink target, got a string of 4096 bytes (at most 4095 allowed)",
		"size-overflow":        "file size 9223372036854775816 is too large",
		"deep":                 `/d/d"): directories nested deeper than 1024`,
		"huge-size":            "invalid nar at byte 112: expected file contents: unexpected EOF",
		"symlink-empty-target": "symlink target is empty",
		"empty":                "invalid nar at byte 0: expected \"nix-archive-1\": unexpected EOF",
	}
	for _, tc := range nartest.Malicious() {
		w, ok := want[tc.Name]
		if !ok {
			continue
		}
		delete(want, tc.Name)
		_, err := readAll(bytes.NewReader(tc.Data))
		if err == nil || !strings.Contains(err.Error(), w) || len(err.Error()) > 400 {
			t.Errorf("reading %s = %v, want an error of at most 400 bytes containing %q", tc.Name, err, w)
		}
	}
	for name := range want {
		t.Errorf("no malicious case %q", name)
	}
}

func TestReader_Next_SourceError(t *testing.T) {
	// An error of the source is passed on, and is not a FormatError.
	data := nartest.NAR(nartest.Sample())
	errBroken := errors.New("connection reset")
	for _, cut := range []int{0, 30, len(data) / 2} {
		src := io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(errBroken))
		_, err := readAll(src)
		var fe *nar.FormatError
		if !errors.Is(err, errBroken) || errors.As(err, &fe) {
			t.Errorf("reading a source failing after %d bytes = %v, want %v and no FormatError", cut, err, errBroken)
		}
	}
}

func TestReader_Next_Valid(t *testing.T) {
	for _, tc := range nartest.Valid() {
		t.Run(tc.Name, func(t *testing.T) {
			ents, err := readAll(bytes.NewReader(tc.Data))
			if err != nil {
				t.Fatalf("reading %s = %v, want nil", tc.Why, err)
			}
			if enc := encode(ents); !bytes.Equal(enc, tc.Data) {
				t.Errorf("encoding the nodes of %s: %s", tc.Why, firstDiff(enc, tc.Data))
			}
		})
	}
}
