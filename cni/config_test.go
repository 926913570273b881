package cni

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseNetConf(t *testing.T) {
	conf, err := ParseNetConf([]byte(`{"cniVersion":"1.0.0","name":"netward","type":"netward-cni",
		"agentSocket":"/run/netward/node-1.sock","subnet":"10.244.1.7/24",
		"prevResult":{"cniVersion":"1.0.0"},"runtimeConfig":{"x":1},"somethingElse":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.SubnetPrefix != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("subnet %v, want it masked", conf.SubnetPrefix)
	}
	if conf.IPAMDataDir != DefaultIPAMDataDir || conf.MTU != DefaultMTU {
		t.Errorf("defaults: %q %d", conf.IPAMDataDir, conf.MTU)
	}
	if conf.AgentSocket != "/run/netward/node-1.sock" || conf.Name != "netward" || conf.CNIVersion != "1.0.0" {
		t.Errorf("conf %+v", conf)
	}
	conf, err = ParseNetConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"netward-cni","agentSocket":"/s","subnet":"10.0.0.0/30","ipamDataDir":"/tmp/x","mtu":9000}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.IPAMDataDir != "/tmp/x" || conf.MTU != 9000 {
		t.Errorf("conf %+v", conf)
	}
}

func TestParseNetConfErrors(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{`, "network configuration: unexpected EOF"},
		{`[]`, "cannot unmarshal array"},
		{`{"name":"n","agentSocket":"/s"}`, `"subnet" is required`},
		{`{"name":"n","subnet":"10.0.0.0/24"}`, `"agentSocket" is required`},
		{`{"agentSocket":"/s","subnet":"10.0.0.0/24"}`, `"name" is required`},
		{`{"name":"../x","agentSocket":"/s","subnet":"10.0.0.0/24"}`, `"name" "../x"`},
		{`{"name":"n","agentSocket":"/s","subnet":"10.0.0.0"}`, `"subnet" "10.0.0.0": netip.ParsePrefix`},
		{`{"name":"n","agentSocket":"/s","subnet":"fd00::/64"}`, "only IPv4"},
		{`{"name":"n","agentSocket":"/s","subnet":"10.0.0.0/31"}`, "too small"},
		{`{"name":"n","agentSocket":"/s","subnet":"169.254.0.0/16"}`, "contains the gateway address 169.254.1.1"},
		{`{"name":"n","agentSocket":"/s","subnet":"10.0.0.0/24","mtu":20}`, `"mtu" 20`},
		{`{"name":"n","agentSocket":"/s","subnet":"10.0.0.0/24","mtu":"x"}`, "cannot unmarshal string"},
		// every problem at once
		{`{}`, `"name" is required; "agentSocket" is required (the node agent's unix socket, e.g. /run/netward/node-1.sock); "subnet" is required`},
	} {
		_, err := ParseNetConf([]byte(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.conf, err, tc.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	// What libcni and the kubelet's runtimes send.
	a, err := ParseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1;SOMETHING=else=with=equals")
	if err != nil {
		t.Fatal(err)
	}
	want := K8sArgs{PodNamespace: "shop", PodName: "api-0", PodInfraContainerID: "abc123", PodUID: "u-1"}
	if a != want {
		t.Errorf("got %+v, want %+v", a, want)
	}
	for _, s := range []string{"", ";", "K8S_POD_NAME="} {
		if a, err := ParseArgs(s); err != nil || a.PodName != "" {
			t.Errorf("%q: %+v %v", s, a, err)
		}
	}
	for _, s := range []string{"K8S_POD_NAME", "A=1;garbage", "=x"} {
		if _, err := ParseArgs(s); err == nil || !strings.Contains(err.Error(), "invalid pair") {
			t.Errorf("%q: error %v, want invalid pair", s, err)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a := HostVethName("0123456789abcdef", "eth0")
	if len(a) != 13 || !strings.HasPrefix(a, "nw") || len(a) > 15 {
		t.Errorf("name %q: want nw + 11 hex, at most 15 characters", a)
	}
	if a != HostVethName("0123456789abcdef", "eth0") {
		t.Error("not deterministic")
	}
	if a == HostVethName("0123456789abcdef", "eth1") || a == HostVethName("0123456789abcdee", "eth0") {
		t.Error("different attachments share a name")
	}
	// The documented derivation: sha256 of the container ID followed by the ifname.
	if got := HostVethName("c", "eth0"); got != "nw"+sha256Hex("ceth0")[:11] {
		t.Errorf("got %q", got)
	}
}
