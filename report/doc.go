// Package report renders an analysis.Matrix — every allowed connection between workloads
// and outside peers — for people and tools: an aligned text table, JSON with a stable
// schema, CSV, Markdown for pull-request comments, Graphviz DOT and a self-contained HTML
// page with a heat-map and a graph. It also narrows a matrix to one workload (Focus), one
// direction of it (Direction) or one port (Port).
//
// Renderers never decide anything: they print the port ranges BuildMatrix read from the
// compiled policy maps.
//
// # JSON schema (version 1)
//
//	{
//	  "schema": "netward.matrix/v1",
//	  "groups": [{
//	    "id":        "pod:shop/api",      // stable key; pod:NS/WORKLOAD[#IDENTITY], cidr:PREFIX, world, host, remote-node
//	    "kind":      "workload",          // workload | cidr | world | host | remote-node
//	    "namespace": "shop",              // workloads only, else ""
//	    "name":      "api",
//	    "label":     "shop/api",          // display name
//	    "identity":  12345,               // Cilium numeric identity
//	    "pods":      ["api-5c6b7-fghij"], // workloads only, else []
//	    "prefix":    "",                  // cidr only: the CIDR
//	    "except":    []                   // cidr only: longer prefixes that are groups of their own
//	  }],
//	  "connections": [{
//	    "from": "pod:shop/web", "to": "pod:shop/api",   // group ids
//	    "ports": [{
//	      "protocol": "TCP",   // TCP | UDP | SCTP | ICMP | ANY (every protocol and port)
//	      "from": 8080,        // first port (ICMP: type) of the range; ANY: 0
//	      "to":   8080,        // last port of the range, inclusive; ANY: 65535
//	      "proxied": true,     // the connection goes through the L7 proxy
//	      "http": ["GET /catalog(/.*)?"], // HTTP rules that restrict requests; [] with proxied = every request
//	      "summary": "TCP 8080 [HTTP GET /catalog(/.*)?]"
//	    }],
//	    "summary": "TCP 8080 [HTTP GET /catalog(/.*)?]"  // the ranges joined by ", "
//	  }]
//	}
//
// Fields are never omitted; lists are [] rather than null. Groups keep the matrix order
// (workloads by namespace and name, then CIDR ranges, world, host, remote-node) and
// connections are ordered by source, then destination group.
package report
