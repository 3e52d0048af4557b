// failprobe adapter for go-redis (github.com/redis/go-redis/v9), protocol version 1
// (adapters/README.md). failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and
// FAILPROBE_TIMEOUT_MS in the environment and speaks JSON lines on stdin/stdout.
//
// The client is built the way an application builds it; these settings mirror a production one
// (unset: go-redis's own default, except where noted). Durations are Go durations (250ms, 3s) or
// bare milliseconds; `none` is no timeout (go-redis's -1).
//
//	GOREDIS_MODE                direct | sentinel | cluster (default: from FAILPROBE_TARGET's
//	                            scheme: redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
//	GOREDIS_READ_TIMEOUT        per command read (default: FAILPROBE_TIMEOUT_MS; go-redis's is 5s)
//	GOREDIS_WRITE_TIMEOUT       per command write (go-redis default: the read timeout)
//	GOREDIS_DIAL_TIMEOUT        to connect (go-redis default 5s)
//	GOREDIS_POOL_SIZE           connections per node (go-redis default 10 per CPU, cluster 5 per CPU)
//	GOREDIS_POOL_TIMEOUT        wait for a free connection (go-redis default read timeout + 1s)
//	GOREDIS_MAX_RETRIES         retries of a command on a network error or a failover's
//	                            READONLY/LOADING/... (go-redis default 3; cluster: none, it has
//	                            GOREDIS_MAX_REDIRECTS; -1: none)
//	GOREDIS_MIN_RETRY_BACKOFF   go-redis default 10ms (-1: none)
//	GOREDIS_MAX_RETRY_BACKOFF   go-redis default 1s (-1: none)
//	GOREDIS_CONTEXT_TIMEOUT     a context deadline per command, as an application's request
//	                            context, with ContextTimeoutEnabled (default: none, context.Background())
//	GOREDIS_PROTOCOL            2 | 3 (go-redis default 3)
//	GOREDIS_MAX_REDIRECTS       cluster: MOVED/ASK/network-error redirections (go-redis default 3; -1: none)
//	GOREDIS_ROUTE_BY_LATENCY    cluster: reads to the closest node, primary or replica (default false)
//	GOREDIS_ROUTE_RANDOMLY      cluster: reads to a random node (default false)
//	GOREDIS_READ_ONLY           cluster: reads to replicas (default false)
//	GOREDIS_CLUSTER_STATE_RELOAD_INTERVAL  cluster: the slot map's age at which a command
//	                            reloads it (go-redis default 60s; it also reloads on MOVED/ASK
//	                            and READONLY, not on a connection error)
//
// Direct: redis.NewClient. Sentinel: redis.NewFailoverClient (MasterName, SentinelAddrs).
// Cluster: redis.NewClusterClient (Addrs).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func env(name string) string { return os.Getenv(name) }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-redis adapter: "+format+"\n", args...)
	os.Exit(2)
}

// duration reads a timeout: unset → 0 (go-redis's default), `none` → -1 (no timeout).
func duration(name string) time.Duration {
	v := env(name)
	switch {
	case v == "":
		return 0
	case v == "none":
		return -1
	}
	if ms, err := strconv.Atoi(v); err == nil {
		return time.Duration(ms) * time.Millisecond
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fail("%s=%q is not a duration", name, v)
	}
	return d
}

func integer(name string) int {
	v := env(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fail("%s=%q is not an integer", name, v)
	}
	return n
}

func boolean(name string) bool {
	v := env(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		fail("%s=%q is not true or false", name, v)
	}
	return b
}

// shown is an effective timeout as the library holds it: 0 and -1 both mean it sets no deadline.
func shown(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}

// hosts splits `a:1,[::1]:2,b` (FAILPROBE_TARGET's host list) into host:port addresses.
func hosts(netloc string, defaultPort int) []string {
	var out []string
	for _, part := range strings.Split(netloc, ",") {
		if host, port, err := net.SplitHostPort(part); err == nil {
			out = append(out, net.JoinHostPort(host, port))
		} else {
			out = append(out, net.JoinHostPort(strings.Trim(part, "[]"), strconv.Itoa(defaultPort)))
		}
	}
	return out
}

type client interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
	Ping(ctx context.Context) *redis.StatusCmd
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	Close() error
}

func build() (client, map[string]any) {
	target := env("FAILPROBE_TARGET")
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok {
		fail("FAILPROBE_TARGET=%q is not a URL", target)
	}
	mode := env("GOREDIS_MODE")
	if mode == "" {
		mode = "direct"
		if strings.Contains(scheme, "+sentinel") {
			mode = "sentinel"
		} else if strings.Contains(scheme, "+cluster") {
			mode = "cluster"
		}
	}
	netloc, path, _ := strings.Cut(rest, "/")
	username := ""
	if at := strings.LastIndex(netloc, "@"); at >= 0 {
		user, _, _ := strings.Cut(netloc[:at], ":")
		username, _ = url.PathUnescape(user)
		netloc = netloc[at+1:]
	}
	var tlsConfig *tls.Config
	if strings.HasPrefix(scheme, "rediss") || strings.HasPrefix(scheme, "valkeys") {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if ca := env("FAILPROBE_TLS_CA_FILE"); ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				fail("FAILPROBE_TLS_CA_FILE: %v", err)
			}
			tlsConfig.RootCAs = x509.NewCertPool()
			tlsConfig.RootCAs.AppendCertsFromPEM(pem)
		}
	}
	// The command timeout follows --timeout, as the other adapters' do; the rest is go-redis's.
	readTimeout := duration("GOREDIS_READ_TIMEOUT")
	if readTimeout == 0 && env("FAILPROBE_TIMEOUT_MS") != "" {
		readTimeout = duration("FAILPROBE_TIMEOUT_MS")
	}
	contextTimeout := duration("GOREDIS_CONTEXT_TIMEOUT")
	password := env("FAILPROBE_PASSWORD")
	settings := map[string]any{"mode": mode, "tls": tlsConfig != nil}
	if username != "" {
		settings["username"] = username
	}
	// FAILPROBE_CLIENT_NAME (adapters/README.md): go-redis names every connection with it (each
	// cluster node's pool, the primary's and the sentinels' through Sentinel).
	clientName := env("FAILPROBE_CLIENT_NAME")
	if clientName != "" {
		settings["client_name"] = clientName
	}
	if contextTimeout > 0 {
		settings["context_timeout"] = contextTimeout.String()
	} else {
		settings["context_timeout"] = "none"
	}
	common := func(o *redis.Options) {
		settings["read_timeout"] = shown(o.ReadTimeout)
		settings["write_timeout"] = shown(o.WriteTimeout)
		settings["dial_timeout"] = shown(o.DialTimeout)
		settings["pool_size"] = o.PoolSize
		settings["pool_timeout"] = shown(o.PoolTimeout)
		settings["max_retries"] = o.MaxRetries
		settings["min_retry_backoff"] = o.MinRetryBackoff.String()
		settings["max_retry_backoff"] = o.MaxRetryBackoff.String()
		settings["protocol"] = o.Protocol
	}
	switch mode {
	case "cluster":
		c := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                      hosts(netloc, 6379),
			ClientName:                 clientName,
			Username:                   username,
			Password:                   password,
			TLSConfig:                  tlsConfig,
			ReadTimeout:                readTimeout,
			WriteTimeout:               duration("GOREDIS_WRITE_TIMEOUT"),
			DialTimeout:                duration("GOREDIS_DIAL_TIMEOUT"),
			PoolSize:                   integer("GOREDIS_POOL_SIZE"),
			PoolTimeout:                duration("GOREDIS_POOL_TIMEOUT"),
			MaxRetries:                 integer("GOREDIS_MAX_RETRIES"),
			MinRetryBackoff:            duration("GOREDIS_MIN_RETRY_BACKOFF"),
			MaxRetryBackoff:            duration("GOREDIS_MAX_RETRY_BACKOFF"),
			Protocol:                   integer("GOREDIS_PROTOCOL"),
			MaxRedirects:               integer("GOREDIS_MAX_REDIRECTS"),
			RouteByLatency:             boolean("GOREDIS_ROUTE_BY_LATENCY"),
			RouteRandomly:              boolean("GOREDIS_ROUTE_RANDOMLY"),
			ReadOnly:                   boolean("GOREDIS_READ_ONLY"),
			ClusterStateReloadInterval: duration("GOREDIS_CLUSTER_STATE_RELOAD_INTERVAL"),
			ContextTimeoutEnabled:      contextTimeout > 0,
		})
		o := c.Options()
		settings["read_timeout"] = shown(o.ReadTimeout)
		settings["write_timeout"] = shown(o.WriteTimeout)
		settings["dial_timeout"] = shown(o.DialTimeout)
		settings["pool_size"] = o.PoolSize
		settings["pool_timeout"] = shown(o.PoolTimeout)
		settings["max_retries"] = max(o.MaxRetries, 0)
		settings["min_retry_backoff"] = o.MinRetryBackoff.String()
		settings["max_retry_backoff"] = o.MaxRetryBackoff.String()
		settings["protocol"] = o.Protocol
		if o.Protocol == 0 {
			settings["protocol"] = 3 // go-redis's default, which each node's options take
		}
		settings["max_redirects"] = o.MaxRedirects
		settings["route_by_latency"] = o.RouteByLatency
		settings["route_randomly"] = o.RouteRandomly
		settings["read_only"] = o.ReadOnly
		settings["cluster_state_reload_interval"] = o.ClusterStateReloadInterval.String()
		return c, settings
	case "sentinel":
		parts := strings.Split(path, "/")
		db := 0
		if len(parts) > 1 && parts[1] != "" {
			db, _ = strconv.Atoi(parts[1])
		}
		c := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            parts[0],
			SentinelAddrs:         hosts(netloc, 26379),
			SentinelPassword:      env("FAILPROBE_SENTINEL_PASSWORD"),
			ClientName:            clientName,
			Username:              username,
			Password:              password,
			DB:                    db,
			TLSConfig:             tlsConfig,
			ReadTimeout:           readTimeout,
			WriteTimeout:          duration("GOREDIS_WRITE_TIMEOUT"),
			DialTimeout:           duration("GOREDIS_DIAL_TIMEOUT"),
			PoolSize:              integer("GOREDIS_POOL_SIZE"),
			PoolTimeout:           duration("GOREDIS_POOL_TIMEOUT"),
			MaxRetries:            integer("GOREDIS_MAX_RETRIES"),
			MinRetryBackoff:       duration("GOREDIS_MIN_RETRY_BACKOFF"),
			MaxRetryBackoff:       duration("GOREDIS_MAX_RETRY_BACKOFF"),
			Protocol:              integer("GOREDIS_PROTOCOL"),
			ContextTimeoutEnabled: contextTimeout > 0,
		})
		common(c.Options())
		settings["master"] = parts[0]
		return c, settings
	}
	db, _ := strconv.Atoi(path)
	c := redis.NewClient(&redis.Options{
		Addr:                  hosts(netloc, 6379)[0],
		ClientName:            clientName,
		Username:              username,
		Password:              password,
		DB:                    db,
		TLSConfig:             tlsConfig,
		ReadTimeout:           readTimeout,
		WriteTimeout:          duration("GOREDIS_WRITE_TIMEOUT"),
		DialTimeout:           duration("GOREDIS_DIAL_TIMEOUT"),
		PoolSize:              integer("GOREDIS_POOL_SIZE"),
		PoolTimeout:           duration("GOREDIS_POOL_TIMEOUT"),
		MaxRetries:            integer("GOREDIS_MAX_RETRIES"),
		MinRetryBackoff:       duration("GOREDIS_MIN_RETRY_BACKOFF"),
		MaxRetryBackoff:       duration("GOREDIS_MAX_RETRY_BACKOFF"),
		Protocol:              integer("GOREDIS_PROTOCOL"),
		ContextTimeoutEnabled: contextTimeout > 0,
	})
	common(c.Options())
	return c, settings
}

// kind names a failure as adapters/README.md asks: timeout, connection, server or other.
func kind(err error) string {
	var reply redis.Error
	var netErr net.Error
	switch {
	case errors.As(err, &reply):
		return "server"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrPoolTimeout),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, redis.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed), errors.As(err, &netErr):
		return "connection"
	}
	msg := err.Error()
	if strings.Contains(msg, "connection") || strings.Contains(msg, "refused") || strings.Contains(msg, "closed") {
		return "connection"
	}
	return "other"
}

// value is a reply as the protocol carries it: a string, an integer or null.
func value(v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case int64, string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(v)
}

type request struct {
	ID          json.RawMessage `json:"id"`
	Cmd         []string        `json:"cmd"`
	Subscribe   *string         `json:"subscribe"`
	Unsubscribe *string         `json:"unsubscribe"`
}

// Protocol 2: a subscription as an application keeps one, PubSub.Channel(); go-redis reconnects
// and subscribes again on its own.
type subscriptions struct {
	mu   sync.Mutex
	open map[string]*redis.PubSub
}

func (s *subscriptions) subscribe(rdb client, channel string, send func(any)) {
	ps := rdb.Subscribe(context.Background(), channel)
	s.mu.Lock()
	s.open[channel] = ps
	s.mu.Unlock()
	go func() {
		for msg := range ps.Channel() {
			send(map[string]any{"msg": msg.Channel, "payload": msg.Payload})
		}
	}()
}

func (s *subscriptions) unsubscribe(channel string) {
	s.mu.Lock()
	ps := s.open[channel]
	delete(s.open, channel)
	s.mu.Unlock()
	if ps != nil {
		ps.Close()
	}
}

func main() {
	rdb, settings := build()
	contextTimeout := duration("GOREDIS_CONTEXT_TIMEOUT")
	// Connected before the hello, as an application is before it serves: the primary found
	// (through Sentinel), the cluster's slots known.
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	err := rdb.Ping(ctx).Err()
	cancel()
	if err != nil {
		fail("could not connect to %s: %v", env("FAILPROBE_TARGET"), err)
	}

	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	send := func(obj any) {
		line, _ := json.Marshal(obj)
		mu.Lock()
		out.Write(append(line, '\n'))
		out.Flush()
		mu.Unlock()
	}
	send(map[string]any{"hello": 2, "client": "go-redis", "version": redis.Version(), "settings": settings})
	subs := &subscriptions{open: map[string]*redis.PubSub{}}

	var inFlight sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<20)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fail("not a request: %v", err)
		}
		if req.Subscribe != nil {
			subs.subscribe(rdb, *req.Subscribe, send)
			continue
		}
		if req.Unsubscribe != nil {
			subs.unsubscribe(*req.Unsubscribe)
			continue
		}
		inFlight.Add(1)
		go func() {
			defer inFlight.Done()
			args := make([]any, len(req.Cmd))
			for i, a := range req.Cmd {
				args[i] = a
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if contextTimeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, contextTimeout)
			}
			defer cancel()
			v, err := rdb.Do(ctx, args...).Result()
			switch {
			case err == nil || errors.Is(err, redis.Nil):
				send(map[string]any{"id": req.ID, "ok": true, "value": value(v)})
			default:
				send(map[string]any{"id": req.ID, "ok": false, "kind": kind(err), "error": err.Error()})
			}
		}()
	}
	// stdin closed: failprobe is done; finish what is in flight (1.5 s at most), then leave.
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(1500 * time.Millisecond):
	}
	go rdb.Close()
	time.Sleep(10 * time.Millisecond)
	os.Exit(0)
}
