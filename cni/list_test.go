package cni

import "testing"

func TestDecodeEndpointList(t *testing.T) {
	for _, body := range []string{
		`[{"containerID":"a"},{"containerID":"b","podName":"x"}]`,
		`{"endpoints":[{"containerID":"a","id":3},{"containerID":"b"}]}`,
		` {"items":[{"containerID":"a"}, {"containerID":"b"}]} `,
	} {
		eps, err := decodeEndpointList([]byte(body))
		if err != nil || len(eps) != 2 || eps[0].ContainerID != "a" || eps[1].ContainerID != "b" {
			t.Errorf("%s: %+v %v", body, eps, err)
		}
	}
	if _, err := decodeEndpointList([]byte(`"x"`)); err == nil {
		t.Error("a string decoded")
	}
}
