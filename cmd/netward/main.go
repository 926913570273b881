// Command netward resolves, explains and enforces Kubernetes NetworkPolicy,
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.
package main

import (
	"errors"
	"fmt"
	"os"
)

// exitError carries an exit code: 1 for "the answer is no" (a failed check), 2 for invalid
// input.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func main() {
	cmd := newRootCommand(os.Stdin, os.Stdout, os.Stderr)
	if err := cmd.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "netward:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "netward:", err)
		os.Exit(2)
	}
}
