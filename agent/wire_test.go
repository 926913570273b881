package agent

import (
	"reflect"
	"testing"

	"github.com/netward/netward/cni"
)

// jsonFields lists a struct's JSON field names and Go kinds.
func jsonFields(t reflect.Type) map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	for i := range t.NumField() {
		f := t.Field(i)
		out[f.Tag.Get("json")] = f.Type.Kind()
	}
	return out
}

// The CNI plugin keeps its own copy of the registration body (so that it does not link this
// package); both must put the same fields on the wire.
func TestCNIWireTypesMatch(t *testing.T) {
	plugin, agent := jsonFields(reflect.TypeFor[cni.EndpointRequest]()), jsonFields(reflect.TypeFor[EndpointRequest]())
	if !reflect.DeepEqual(plugin, agent) {
		t.Errorf("cni.EndpointRequest fields %v, agent.EndpointRequest fields %v", plugin, agent)
	}
}
