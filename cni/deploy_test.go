package cni

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// The sample conflist under deploy/ loads with libcni and is a valid netward configuration.
func TestSampleConflist(t *testing.T) {
	list, err := libcni.ConfListFromFile("../deploy/10-netward.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "netward" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != PluginType {
		t.Fatalf("list %+v", list)
	}
	// What libcni puts on the plugin's stdin: the entry with the list's cniVersion and name.
	var m map[string]any
	if err := json.Unmarshal(list.Plugins[0].Bytes, &m); err != nil {
		t.Fatal(err)
	}
	m["cniVersion"], m["name"] = list.CNIVersion, list.Name
	b, _ := json.Marshal(m)
	conf, err := ParseNetConf(b)
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != "/run/netward/node-1.sock" || conf.SubnetPrefix.String() != "10.244.1.0/24" || conf.CNIVersion != "1.1.0" {
		t.Errorf("conf %+v", conf)
	}
}
