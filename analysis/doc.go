// Package analysis answers questions about policy by looking up the compiled policy maps:
// the verdict of one flow and why (Trace), and whether a list of expected flows holds
// (Check). It never evaluates rules itself; every answer is a policy.MapState lookup plus,
// inside a proxy redirect, the endpoint's L7 rules — the same data the datapath and the
// proxy enforce.
package analysis
