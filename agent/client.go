package agent

import (
	"bufio"
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
)

// Client talks to an agent's API over its unix socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client of the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{Socket: socket, http: &http.Client{Transport: tr}}
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("agent: %d: %s", e.Code, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://netward"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readStatusError(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func readStatusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var ae apiError
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
		msg = ae.Error
	}
	return &StatusError{Code: resp.StatusCode, Message: msg}
}

// Register registers an endpoint (POST /v1/endpoints).
func (c *Client) Register(ctx context.Context, req EndpointRequest) (EndpointResponse, error) {
	var out EndpointResponse
	err := c.do(ctx, http.MethodPost, "/v1/endpoints", req, &out)
	return out, err
}

// Deregister removes an endpoint (DELETE /v1/endpoints/{containerID}); an unknown one is
// not an error.
func (c *Client) Deregister(ctx context.Context, containerID string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(containerID), nil, nil)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil
	}
	return err
}

// Endpoints lists the endpoints.
func (c *Client) Endpoints(ctx context.Context) ([]Endpoint, error) {
	var out []Endpoint
	err := c.do(ctx, http.MethodGet, "/v1/endpoints", nil, &out)
	return out, err
}

// Endpoint returns one endpoint with its policy map: by id, "namespace/name" or container ID.
func (c *Client) Endpoint(ctx context.Context, key string) (Endpoint, error) {
	var out Endpoint
	err := c.do(ctx, http.MethodGet, "/v1/endpoints/"+escapeKey(key), nil, &out)
	return out, err
}

func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
	return out, err
}

// Health returns the body of /healthz and whether it answered 200.
func (c *Client) Health(ctx context.Context) (string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://netward/healthz", nil)
	if err != nil {
		return "", false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return strings.TrimSpace(string(b)), resp.StatusCode == http.StatusOK, nil
}

// EventFilter selects events (server side).
type EventFilter struct {
	// Pod is namespace/name: events whose source or destination is that pod.
	Pod string
	// Verdict is forwarded, dropped, redirected or audit.
	Verdict string
	// Follow streams new events after the recent ones until the context ends.
	Follow bool
	// Last limits the recent events sent first (0: all the agent keeps).
	Last int
}

func (f EventFilter) query() string {
	q := url.Values{}
	if f.Pod != "" {
		q.Set("pod", f.Pod)
	}
	if f.Verdict != "" {
		q.Set("verdict", f.Verdict)
	}
	if f.Follow {
		q.Set("follow", "true")
	}
	if f.Last > 0 {
		q.Set("last", fmt.Sprint(f.Last))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Events calls fn for every event the agent sends (GET /v1/events) until the stream ends,
// ctx is done (then it returns nil) or fn returns an error.
func (c *Client) Events(ctx context.Context, f EventFilter, fn func(Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://netward/v1/events"+f.query(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readStatusError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return nil
}
