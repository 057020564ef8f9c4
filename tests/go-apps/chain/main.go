// Command chain is one net/http binary used for every service of a call chain
// A -> B -> C (and fan-out) in gosight's end-to-end tests of trace context
// propagation. Each instance is started with its own -name and with -next
// pointing at the service below it; the last one has no -next (the leaf). The
// app never propagates trace context itself: every Traceparent header a
// service receives was put there by the instrumentation, except on
// /own-traceparent. No third-party dependencies; builds with Go 1.22 and later
// (it uses Go 1.22 ServeMux method patterns).
//
// All downstream calls go through one shared http.Client (a clone of the
// default Transport, keep-alive, up to 100 idle connections per host kept in
// the pool, its dialer counting new TCP connections for /stats) and are made
// with http.NewRequestWithContext(r.Context(), ...). Request bodies
// (/post-next) are passed on byte for byte.
// A downstream transport error, a downstream status other than 200 or a
// non-JSON downstream body answers 502 with the error text; a route that
// needs -next on a service without one answers 400. JSON answers end in "\n".
// Each route exercises one thing:
//
//	GET  /hop              calls GET <next>/hop (if -next is set) from the
//	                       handler goroutine, then 200
//	                       {"name":N,"traceparent":T,"downstream":D}: plain
//	                       synchronous propagation across hops. T is the
//	                       (first) Traceparent header this service received, ""
//	                       if none; D is the downstream's JSON answer, or null
//	                       on the leaf. GET /hop/<anything> is the same (for
//	                       long request lines).
//	GET  /hop-async        same answer, but the downstream call is made from a
//	                       new goroutine started with the request's context
//	                       (go func(ctx){...}(r.Context())), the handler waits
//	                       on a channel: propagation across goroutines
//	GET  /fanout?n=K       K (1..100) concurrent GET <next>/hop calls from K
//	                       goroutines sharing r.Context(), waits for all, 200
//	                       with a JSON array of the K downstream answers (in
//	                       call order): concurrent client calls of one server
//	                       span, several connections. &to=<path> calls
//	                       <next><path> instead (e.g. /leaf-echo)
//	GET  /own-traceparent  calls GET <next>/hop with the request header
//	                       "Traceparent: 00-11111111111111111111111111111111-2222222222222222-01"
//	                       set by the app itself (an app with its own SDK) and
//	                       answers 200 with the downstream's JSON verbatim:
//	                       the instrumentation must not overwrite or duplicate
//	                       it. ?to=<path> calls <next><path> instead (path
//	                       starts with "/" and may carry its own query), e.g.
//	                       ?to=/leaf-echo to see every value the next service
//	                       got, or ?to=/own-traceparent%3Fto%3D/hop so that B
//	                       also sets the header and C reports it.
//	GET  /leaf-echo        200 with a JSON array of every Traceparent header
//	                       value received ([] if none): duplicate detection.
//	                       GET /leaf-echo/<anything> is the same.
//	POST /post-next        reads the body and POSTs it unchanged (with a
//	                       Content-Length) to <next>/leaf-body, answers 200 with
//	                       the downstream's JSON verbatim: client request bodies
//	POST /leaf-body        reads the body, 200
//	                       {"len":N,"sha256":"<hex>","traceparent":[values]}:
//	                       server request bodies, byte-exact. POST
//	                       /leaf-body/<anything> is the same (for long request
//	                       lines).
//	GET  /fail-next        calls GET <dead>/hop where <dead> is -dead (default
//	                       http://127.0.0.1:1, nothing listens there): a client
//	                       transport error, answered 502 with the error text
//	GET  /forward-headers?to=<path>
//	                       calls GET <next><path> (path starts with "/") with
//	                       every header this request carried copied onto the
//	                       outgoing one, values verbatim and repeated headers
//	                       repeated (Traceparent included, even a malformed
//	                       one), except the hop-by-hop ones (Connection,
//	                       Keep-Alive, Proxy-Connection, TE, Trailer,
//	                       Transfer-Encoding, Upgrade, Content-Length), and
//	                       answers 200 with the downstream's JSON verbatim: an
//	                       app or proxy that passes its incoming headers on
//	GET  /stats            200 {"dials":N}: N is the number of TCP connections
//	                       the shared client has dialled since start, so a
//	                       test can tell pooled keep-alive connections were
//	                       reused (N did not grow)
//	anything else          ServeMux's own 404 (no handler of ours runs)
//
// Flags: -addr (default 127.0.0.1:8080; port 0 picks a free port), -name
// (service name, echoed in answers; default "chain"), -next (base URL of the
// downstream service such as http://127.0.0.1:40001; empty = leaf), -dead
// (base URL for /fail-next). After the listener is open it prints exactly one
// line, "listening on <host:port>", to stdout, so a test can start it with
// -addr 127.0.0.1:0 and read the port.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ownTraceparent is the header value /own-traceparent sets itself.
const ownTraceparent = "00-11111111111111111111111111111111-2222222222222222-01"

// dials counts the TCP connections the shared client has opened.
var dials atomic.Int64

// client is shared by every downstream call: the default Transport's settings,
// keep-alive, a larger idle pool, and a dialer that counts connections.
var client = &http.Client{Transport: newTransport()}

// hopByHop are the headers /forward-headers does not copy (RFC 9110 7.6.1,
// plus Content-Length, which belongs to this request's own body).
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			dials.Add(1)
		}
		return c, err
	}
	return t
}

var (
	name string
	next string
	dead string
)

// hopAnswer is the answer of /hop and /hop-async.
type hopAnswer struct {
	Name        string          `json:"name"`
	Traceparent string          `json:"traceparent"`
	Downstream  json.RawMessage `json:"downstream"` // nil encodes as null
}

// bodyAnswer is the answer of /leaf-body.
type bodyAnswer struct {
	Len         int      `json:"len"`
	SHA256      string   `json:"sha256"`
	Traceparent []string `json:"traceparent"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	flag.StringVar(&name, "name", "chain", "service name, echoed in answers")
	flag.StringVar(&next, "next", "", "base URL of the downstream service (empty = leaf)")
	flag.StringVar(&dead, "dead", "http://127.0.0.1:1", "base URL /fail-next calls (nothing should listen there)")
	flag.Parse()
	next = strings.TrimSuffix(next, "/")
	dead = strings.TrimSuffix(dead, "/")

	mux := http.NewServeMux()
	hop := func(w http.ResponseWriter, r *http.Request) {
		var down json.RawMessage
		if next != "" {
			var err error
			down, err = call(r.Context(), http.MethodGet, next+"/hop", nil, nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		writeJSON(w, hopAnswer{Name: name, Traceparent: r.Header.Get("Traceparent"), Downstream: down})
	}
	mux.HandleFunc("GET /hop", hop)
	mux.HandleFunc("GET /hop/", hop)
	mux.HandleFunc("GET /hop-async", func(w http.ResponseWriter, r *http.Request) {
		type result struct {
			down json.RawMessage
			err  error
		}
		done := make(chan result, 1)
		go func(ctx context.Context) {
			if next == "" {
				done <- result{}
				return
			}
			down, err := call(ctx, http.MethodGet, next+"/hop", nil, nil)
			done <- result{down, err}
		}(r.Context())
		res := <-done
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, hopAnswer{Name: name, Traceparent: r.Header.Get("Traceparent"), Downstream: res.down})
	})
	mux.HandleFunc("GET /fanout", func(w http.ResponseWriter, r *http.Request) {
		if !needNext(w) {
			return
		}
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > 100 {
			http.Error(w, "n must be an integer in 1..100", http.StatusBadRequest)
			return
		}
		to := r.URL.Query().Get("to")
		if to == "" {
			to = "/hop"
		}
		if !strings.HasPrefix(to, "/") {
			http.Error(w, "to must start with /", http.StatusBadRequest)
			return
		}
		downs := make([]json.RawMessage, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(ctx context.Context, i int) {
				defer wg.Done()
				downs[i], errs[i] = call(ctx, http.MethodGet, next+to, nil, nil)
			}(r.Context(), i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, downs)
	})
	mux.HandleFunc("GET /own-traceparent", func(w http.ResponseWriter, r *http.Request) {
		if !needNext(w) {
			return
		}
		to := r.URL.Query().Get("to")
		if to == "" {
			to = "/hop"
		}
		if !strings.HasPrefix(to, "/") {
			http.Error(w, "to must start with /", http.StatusBadRequest)
			return
		}
		h := http.Header{}
		h.Set("Traceparent", ownTraceparent)
		down, err := call(r.Context(), http.MethodGet, next+to, nil, h)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeRaw(w, down)
	})
	leafEcho := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, traceparents(r))
	}
	mux.HandleFunc("GET /leaf-echo", leafEcho)
	mux.HandleFunc("GET /leaf-echo/", leafEcho)
	mux.HandleFunc("POST /post-next", func(w http.ResponseWriter, r *http.Request) {
		if !needNext(w) {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := http.Header{}
		h.Set("Content-Type", "application/octet-stream")
		down, err := call(r.Context(), http.MethodPost, next+"/leaf-body", body, h)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeRaw(w, down)
	})
	leafBody := func(w http.ResponseWriter, r *http.Request) {
		hash := sha256.New()
		n, err := io.Copy(hash, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, bodyAnswer{Len: int(n), SHA256: hex.EncodeToString(hash.Sum(nil)), Traceparent: traceparents(r)})
	}
	mux.HandleFunc("POST /leaf-body", leafBody)
	mux.HandleFunc("POST /leaf-body/", leafBody)
	mux.HandleFunc("GET /fail-next", func(w http.ResponseWriter, r *http.Request) {
		down, err := call(r.Context(), http.MethodGet, dead+"/hop", nil, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeRaw(w, down) // something listens at -dead after all
	})

	mux.HandleFunc("GET /forward-headers", func(w http.ResponseWriter, r *http.Request) {
		if !needNext(w) {
			return
		}
		to := r.URL.Query().Get("to")
		if !strings.HasPrefix(to, "/") {
			http.Error(w, "to must start with /", http.StatusBadRequest)
			return
		}
		h := http.Header{}
		for k, vs := range r.Header {
			if !hopByHop[http.CanonicalHeaderKey(k)] {
				h[k] = append([]string(nil), vs...)
			}
		}
		down, err := call(r.Context(), http.MethodGet, next+to, nil, h)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeRaw(w, down)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]int64{"dials": dials.Load()})
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}

// call makes one downstream request through the shared client and returns
// the answer's body, which must be JSON with status 200. A nil body sends no
// body; a non-nil one is sent with its Content-Length.
func call(ctx context.Context, method, url string, body []byte, h http.Header) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body) // read to EOF so the connection is reused
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading answer: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(data))
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s %s: answer is not JSON: %q", method, url, data)
	}
	return json.RawMessage(data), nil
}

// needNext answers 400 and returns false on a service without -next.
func needNext(w http.ResponseWriter) bool {
	if next == "" {
		http.Error(w, "this route needs -next ("+name+" is a leaf)", http.StatusBadRequest)
		return false
	}
	return true
}

// traceparents returns every Traceparent header value of r, [] if none.
func traceparents(r *http.Request) []string {
	vs := r.Header.Values("Traceparent")
	if vs == nil {
		vs = []string{}
	}
	return vs
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, data)
}

// writeRaw answers 200 with data, which is JSON, plus a final newline.
func writeRaw(w http.ResponseWriter, data []byte) {
	data = append(bytes.TrimRight(data, "\r\n\t "), '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}
