//go:build !linux

package agent

import (
	"context"
	"errors"
)

// Agent is the node agent; it needs Linux (eBPF).
type Agent struct{}

var errUnsupported = errors.New("netward agent: the eBPF datapath needs Linux")

// New fails: the agent needs Linux.
func New(cfg Config) (*Agent, error) { return nil, errUnsupported }

// Start fails: the agent needs Linux.
func (a *Agent) Start(ctx context.Context) error { return errUnsupported }

// Run fails: the agent needs Linux.
func (a *Agent) Run(ctx context.Context) error { return errUnsupported }

// Close does nothing.
func (a *Agent) Close() error { return nil }
