package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// EndpointRequest is the body of POST /v1/endpoints.
type EndpointRequest struct {
	ContainerID  string   `json:"containerID"`
	Netns        string   `json:"netns"`
	IfName       string   `json:"ifName"`
	HostIfName   string   `json:"hostIfName"`
	PodNamespace string   `json:"podNamespace"`
	PodName      string   `json:"podName"`
	IPs          []string `json:"ips"`
}

// Timeouts of the agent calls. Registration waits until the agent enforces the policy.
const (
	RegisterTimeout = 2 * time.Minute
	AgentTimeout    = 10 * time.Second
)

// Agent is the client of the node agent's endpoint API on its unix socket.
//
// It is deliberately not agent.Client: importing package agent would link the eBPF
// loader, client-go and the policy engine into a binary the runtime executes for every pod
// sandbox. The wire types are duplicated instead, and TestRegisterAgainstAgent (package
// agent... see cni/deploy_test.go) keeps them in step with the agent.s.
type Agent struct {
	Socket string
	client *http.Client
}

// NewAgent returns a client for the agent listening on socket.
func NewAgent(socket string) *Agent {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Agent{Socket: socket, client: &http.Client{Transport: tr}}
}

// AgentError is an error answer of the agent (a status other than the expected ones).
type AgentError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("agent: %s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), strings.TrimSpace(e.Body))
}

// do runs one request; a transport failure (agent not reachable) is wrapped in
// *UnreachableError.
func (a *Agent) do(ctx context.Context, method, path string, body any, timeout time.Duration) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://netward-agent"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, &UnreachableError{Socket: a.Socket, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("agent %s %s: reading the answer: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// UnreachableError means the agent did not answer at all.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("agent on %s not reachable: %v", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the agent did not answer.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// Register posts the endpoint and returns the agent's answer (its JSON body).
func (a *Agent) Register(ctx context.Context, r EndpointRequest) (json.RawMessage, error) {
	const path = "/v1/endpoints"
	status, body, err := a.do(ctx, http.MethodPost, path, r, RegisterTimeout)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return nil, &AgentError{Method: http.MethodPost, Path: path, Status: status, Body: string(body)}
	}
	return body, nil
}

// Deregister deletes the endpoint; an endpoint the agent does not know is success.
func (a *Agent) Deregister(ctx context.Context, containerID string) error {
	path := "/v1/endpoints/" + url.PathEscape(containerID)
	status, body, err := a.do(ctx, http.MethodDelete, path, nil, AgentTimeout)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return &AgentError{Method: http.MethodDelete, Path: path, Status: status, Body: string(body)}
}

// Registered reports whether the agent lists the container's endpoint.
func (a *Agent) Registered(ctx context.Context, containerID string) (bool, error) {
	const path = "/v1/endpoints"
	status, body, err := a.do(ctx, http.MethodGet, path, nil, AgentTimeout)
	if err != nil {
		return false, err
	}
	if status != http.StatusOK {
		return false, &AgentError{Method: http.MethodGet, Path: path, Status: status, Body: string(body)}
	}
	eps, err := decodeEndpointList(body)
	if err != nil {
		return false, fmt.Errorf("agent GET %s: %w", path, err)
	}
	for _, e := range eps {
		if e.ContainerID == containerID {
			return true, nil
		}
	}
	return false, nil
}

type listedEndpoint struct {
	ContainerID string `json:"containerID"`
}

// decodeEndpointList reads a JSON array of endpoints or {"endpoints": [...]}.
func decodeEndpointList(b []byte) ([]listedEndpoint, error) {
	b = bytes.TrimSpace(b)
	var eps []listedEndpoint
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &eps); err != nil {
			return nil, err
		}
		return eps, nil
	}
	var obj struct {
		Endpoints []listedEndpoint `json:"endpoints"`
		Items     []listedEndpoint `json:"items"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	return append(obj.Endpoints, obj.Items...), nil
}

// Healthy asks GET /healthz.
func (a *Agent) Healthy(ctx context.Context) error {
	const path = "/healthz"
	status, body, err := a.do(ctx, http.MethodGet, path, nil, AgentTimeout)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &AgentError{Method: http.MethodGet, Path: path, Status: status, Body: string(body)}
	}
	return nil
}
