// Package l7 holds the L7 rules netward enforces per request and the logic that matches a
// request against them. The engine uses it to answer "would this HTTP request pass", and the
// L7 proxy uses the same matcher on live traffic: one implementation for both.
//
// Semantics follow what Cilium hands to Envoy (semantics doc §1.4, §2.5): method, path and
// host are regular expressions that must match the whole value (RE2, as Envoy's safe_regex);
// headers are "Name" (must be present) or "Name: value" (exact value); headerMatches with no
// mismatch action require the value, while LOG, ADD, DELETE and REPLACE never make the rule
// fail (they only log or rewrite the header). All fields of one rule must hold; rules of a
// list are alternatives.
package l7
