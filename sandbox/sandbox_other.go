//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"io"
)

// RunChildIfRequested returns at once: there is no sandbox child outside
// Linux.
func RunChildIfRequested() {}

// spawnerRef is the spawner of Linux, which other systems do not have.
type spawnerRef struct{}

// warmPool is the warm child of Linux, which other systems do not have.
type warmPool struct{}

func (r *Runner) init() error {
	return errors.New("sandbox: builds are supported on Linux only")
}

// Run fails: builds are supported on Linux only.
func (r *Runner) Run(ctx context.Context, spec *Spec, log io.Writer) (*Result, error) {
	return nil, errors.New("sandbox: builds are supported on Linux only")
}

// Close does nothing: there is no spawner outside Linux.
func (r *Runner) Close() error { return nil }
