package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/storefs/storefs/store/storetest"
)

// TestStore_GC_RemovesTempLeftovers: GC removes the entries of the
// temporary area that the open Store did not hand out, reporting the
// space they took, and keeps those it handed out and still in use. An
// entry handed out and then removed is forgotten: something else at its
// name later is a leftover.
func TestStore_GC_RemovesTempLeftovers(t *testing.T) {
	st := storetest.NewStore(t, nil)
	tmpDir := filepath.Join(st.RealDir(), ".tmp")
	// Left by work this Store knows nothing of.
	foreign := filepath.Join(tmpDir, "build-foreign-1")
	if err := os.MkdirAll(filepath.Join(foreign, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "sub", "big"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	// In use by a build of this Store.
	busy, err := st.MkdirTemp("build-busy-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(busy)
	if err := os.WriteFile(filepath.Join(busy, "out"), []byte("working"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Handed out, removed by its user, and its name used again by someone
	// else; and many more handed out and removed, so that MkdirTemp
	// prunes its record too.
	var reused string
	for i := 0; i < 100; i++ {
		d, err := st.MkdirTemp("done-")
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(d)
		if i == 0 {
			reused = d
		}
	}
	if err := os.Mkdir(reused, 0o755); err != nil {
		t.Fatal(err)
	}

	res, err := st.GC(context.Background(), nil)
	if err != nil {
		t.Fatalf("GC() = %v, want nil", err)
	}
	for _, gone := range []string{foreign, reused} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("Lstat(%s) = %v after GC, want it removed", gone, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(busy, "out")); err != nil || string(b) != "working" {
		t.Errorf("after GC the busy temporary directory holds %q, %v", b, err)
	}
	if res.LeftoversFreed < 64<<10 {
		t.Errorf("GC().LeftoversFreed = %d, want at least %d", res.LeftoversFreed, 64<<10)
	}
}

// TestStore_GC_LeavesWorkInProgress: collections running while paths are
// added never take away an add's temporary directory.
func TestStore_GC_LeavesWorkInProgress(t *testing.T) {
	st := storetest.NewStore(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				name := fmt.Sprintf("wip-%d-%d", g, i)
				if _, err := st.AddText(ctx, name, []byte(name), nil); err != nil {
					errs <- fmt.Errorf("AddText(%s) = %w", name, err)
					return
				}
			}
		}(g)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if _, err := st.GC(ctx, nil); err != nil {
			t.Fatalf("GC() = %v, want nil", err)
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
