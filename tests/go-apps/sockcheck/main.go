// Command sockcheck checks, from inside a Go program, that TCP sockets keep
// their ordinary semantics while gosight's context propagation has them
// enrolled (sockops + sk_msg): FIONREAD counts what arrived, the netpoller
// (epoll) wakes a goroutine blocked in Read when data arrives, bytes arrive
// unchanged, and keep-alive request bodies of every size go through byte for
// byte. One binary, two modes; standard library only (syscall for the ioctl);
// builds with Go 1.22 and later; Linux only.
//
// # Server (-mode server)
//
// A net/http server on -addr (default 127.0.0.1:0; port 0 picks a free port).
// Once it listens it prints exactly one line, "listening on <host:port>", to
// stdout. Routes:
//
//	GET  /upgrade?bursts=N&size=S&gap_ms=G
//	                answers "101 Switching Protocols" (Connection: Upgrade,
//	                Upgrade: sockcheck) on the hijacked connection, then N
//	                times (1..1000): sleeps G ms (0..10000), writes burst i (S
//	                bytes, 1..1048576, of pattern(i): byte j is
//	                (i*131+j) mod 251) and waits (up to 30 s) for a 1-byte ack
//	                from the client before the next burst. After the last ack
//	                it closes the connection. Bad parameters answer 400.
//	POST /echo      answers 200 with the request body, byte for byte
//	                (Content-Length set).
//	GET  /seen      200 with the JSON array of what every /upgrade and /echo
//	                request carried, in arrival order:
//	                {"path":P,"traceparent":T,"n":K,"all":[values]} where T is
//	                the first Traceparent header value ("" if none) and K the
//	                number of Traceparent header lines (0, 1, or more for a
//	                duplicate). /seen itself is not recorded.
//
// # Client (-mode client)
//
// Needs -target (base URL of a sockcheck server, e.g. http://127.0.0.1:40001).
// With -wait-file F it first prints "ready" and waits (up to 30 s) until F
// exists, so a test can attach gosight first. Then:
//
// Upgrade phase: -conns (default 50) connections, -parallel (default 8) at a
// time. Each one is a new TCP connection (its own http.Transport, whose
// DialContext keeps the *net.TCPConn) on which net/http writes
// "GET /upgrade?bursts=&size=&gap_ms=" (from -bursts, -size, -gap). After the
// 101, the response Body is the connection (io.ReadWriteCloser). For each
// burst i:
//
//   - even i (a FIONREAD check): sleep -gap plus -margin without reading, then
//     ioctl(FIONREAD) on the socket must say exactly -size (else
//     wrong_fionread), then read the burst with a read deadline of -timeout
//     (a timeout counts as missed_wakeups);
//   - odd i (a wake-up check): read at once, blocking in the netpoller until
//     the burst arrives, with a read deadline of -gap + -margin + -timeout (a
//     timeout means epoll never woke the reader: missed_wakeups);
//
// the bytes must equal pattern(i) (else wrong_bytes); then the 1-byte ack is
// written. A connection stops at its first read error.
//
// Load phase: -load (default 200) POST /echo requests, -parallel at a time,
// over one shared keep-alive http.Transport, bodies of 100 B to -max-body
// (default 1 MiB, log-uniform, random bytes; the first six have the sizes
// 100, 1000, 4096, 65536, 100000 and -max-body); every third one is sent
// chunked (no Content-Length). The answer must be 200 and equal the body
// (else load_errors).
//
// Output: details of every failure on stderr, then one JSON line on stdout:
//
//	{"conns":C,"conn_errors":E,"bursts":B,"fionread_checks":F,
//	 "wakeup_checks":W,"wrong_fionread":X,"missed_wakeups":M,"wrong_bytes":Y,
//	 "load_requests":L,"load_errors":Z,"load_dials":D}
//
// where C counts connections upgraded (101 received), E connections that
// failed otherwise (dial, status, unexpected read error), B bursts read, and
// D the TCP connections the load phase opened. The exit status is 0 unless the
// flags are bad.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	mode := flag.String("mode", "", "server or client")
	addr := flag.String("addr", "127.0.0.1:0", "server: listen address (port 0 picks a free port)")
	target := flag.String("target", "", "client: base URL of the server, e.g. http://127.0.0.1:40001")
	conns := flag.Int("conns", 50, "client: connections upgraded")
	bursts := flag.Int("bursts", 4, "client: bursts per connection")
	size := flag.Int("size", 4096, "client: bytes per burst")
	gap := flag.Duration("gap", 20*time.Millisecond, "client: server's pause before each burst")
	margin := flag.Duration("margin", 100*time.Millisecond, "client: extra wait before a FIONREAD check")
	timeout := flag.Duration("timeout", 3*time.Second, "client: read deadline beyond the expected arrival")
	parallel := flag.Int("parallel", 8, "client: connections or requests at a time")
	load := flag.Int("load", 200, "client: POST /echo requests of the load phase")
	maxBody := flag.Int("max-body", 1<<20, "client: largest body of the load phase")
	waitFile := flag.String("wait-file", "", "client: print \"ready\" and wait (up to 30s) until this file exists")
	flag.Parse()

	switch *mode {
	case "server":
		serve(*addr)
	case "client":
		if *target == "" || *conns < 0 || *bursts < 1 || *bursts > 1000 || *size < 1 || *size > 1<<20 ||
			*gap < 0 || *gap > 10*time.Second || *parallel < 1 || *load < 0 || *maxBody < 100 {
			fmt.Fprintln(os.Stderr, "sockcheck: client needs -target, -conns >= 0, -bursts 1..1000, -size 1..1048576, -gap 0..10s, -parallel >= 1, -load >= 0, -max-body >= 100")
			os.Exit(2)
		}
		if *waitFile != "" {
			fmt.Println("ready")
			os.Stdout.Sync()
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := os.Stat(*waitFile); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		c := &checker{target: *target, bursts: *bursts, size: *size, gap: *gap, margin: *margin, timeout: *timeout}
		runParallel(*conns, *parallel, c.upgrade)
		runLoad(c, *load, *parallel, *maxBody)
		out, _ := json.Marshal(&c.res)
		fmt.Println(string(out))
		os.Stdout.Sync()
	default:
		fmt.Fprintln(os.Stderr, "sockcheck: -mode server or -mode client")
		os.Exit(2)
	}
}

// pattern is the content of burst i.
func pattern(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte((i*131 + j) % 251)
	}
	return b
}

// ---- server ----

type seenEntry struct {
	Path        string   `json:"path"`
	Traceparent string   `json:"traceparent"`
	N           int      `json:"n"`
	All         []string `json:"all"`
}

var (
	seenMu sync.Mutex
	seen   = []seenEntry{}
)

func record(r *http.Request) {
	vs := r.Header.Values("Traceparent")
	e := seenEntry{Path: r.URL.Path, N: len(vs), All: append([]string{}, vs...)}
	if len(vs) > 0 {
		e.Traceparent = vs[0]
	}
	seenMu.Lock()
	seen = append(seen, e)
	seenMu.Unlock()
}

func intParam(r *http.Request, key string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(r.URL.Query().Get(key))
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s must be an integer in %d..%d", key, lo, hi)
	}
	return v, nil
}

func serve(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		n, err1 := intParam(r, "bursts", 1, 1000)
		size, err2 := intParam(r, "size", 1, 1<<20)
		gapMs, err3 := intParam(r, "gap_ms", 0, 10000)
		if err := errors.Join(err1, err2, err3); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "cannot hijack", http.StatusInternalServerError)
			return
		}
		conn, brw, err := hj.Hijack()
		if err != nil {
			log.Printf("upgrade: hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sockcheck\r\n\r\n")
		if err := brw.Flush(); err != nil {
			log.Printf("upgrade: writing 101: %v", err)
			return
		}
		for i := 0; i < n; i++ {
			time.Sleep(time.Duration(gapMs) * time.Millisecond)
			if _, err := conn.Write(pattern(i, size)); err != nil {
				log.Printf("upgrade: burst %d: %v", i, err)
				return
			}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := brw.ReadByte(); err != nil {
				log.Printf("upgrade: ack %d: %v", i, err)
				return
			}
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	mux.HandleFunc("GET /seen", func(w http.ResponseWriter, r *http.Request) {
		seenMu.Lock()
		data, err := json.Marshal(seen)
		seenMu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(data, '\n'))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}

// ---- client ----

type results struct {
	Conns          int64 `json:"conns"`
	ConnErrors     int64 `json:"conn_errors"`
	Bursts         int64 `json:"bursts"`
	FionreadChecks int64 `json:"fionread_checks"`
	WakeupChecks   int64 `json:"wakeup_checks"`
	WrongFionread  int64 `json:"wrong_fionread"`
	MissedWakeups  int64 `json:"missed_wakeups"`
	WrongBytes     int64 `json:"wrong_bytes"`
	LoadRequests   int64 `json:"load_requests"`
	LoadErrors     int64 `json:"load_errors"`
	LoadDials      int64 `json:"load_dials"`
}

type checker struct {
	target               string
	bursts, size         int
	gap, margin, timeout time.Duration
	res                  results
}

func runParallel(n, parallel int, f func(i int)) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// fionread returns ioctl(FIONREAD) of the socket: bytes waiting to be read.
func fionread(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// upgrade runs the burst protocol on connection number ci.
func (c *checker) upgrade(ci int) {
	var mu sync.Mutex
	var tcp *net.TCPConn
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			tcp, _ = conn.(*net.TCPConn)
			mu.Unlock()
		}
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	fail := func(format string, args ...any) {
		atomic.AddInt64(&c.res.ConnErrors, 1)
		fmt.Fprintf(os.Stderr, "conn %d: "+format+"\n", append([]any{ci}, args...)...)
	}
	url := fmt.Sprintf("%s/upgrade?bursts=%d&size=%d&gap_ms=%d", c.target, c.bursts, c.size, c.gap.Milliseconds())
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fail("%v", err)
		return
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "sockcheck")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fail("%v", err)
		return
	}
	defer resp.Body.Close()
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	mu.Lock()
	conn := tcp
	mu.Unlock()
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok || conn == nil {
		fail("status %d, writable body %v, tcp conn %v", resp.StatusCode, ok, conn != nil)
		return
	}
	atomic.AddInt64(&c.res.Conns, 1)
	buf := make([]byte, c.size)
	for i := 0; i < c.bursts; i++ {
		if i%2 == 0 {
			atomic.AddInt64(&c.res.FionreadChecks, 1)
			time.Sleep(c.gap + c.margin)
			n, err := fionread(conn)
			if err != nil || n != c.size {
				atomic.AddInt64(&c.res.WrongFionread, 1)
				fmt.Fprintf(os.Stderr, "conn %d burst %d: FIONREAD %d (err %v), want %d\n", ci, i, n, err, c.size)
			}
			conn.SetReadDeadline(time.Now().Add(c.timeout))
		} else {
			atomic.AddInt64(&c.res.WakeupChecks, 1)
			conn.SetReadDeadline(time.Now().Add(c.gap + c.margin + c.timeout))
		}
		if _, err := io.ReadFull(rwc, buf); err != nil {
			if isTimeout(err) {
				atomic.AddInt64(&c.res.MissedWakeups, 1)
				n, _ := fionread(conn)
				fmt.Fprintf(os.Stderr, "conn %d burst %d: read timed out (FIONREAD now %d)\n", ci, i, n)
			} else {
				fail("burst %d: read: %v", i, err)
			}
			return
		}
		atomic.AddInt64(&c.res.Bursts, 1)
		if !bytes.Equal(buf, pattern(i, c.size)) {
			atomic.AddInt64(&c.res.WrongBytes, 1)
			fmt.Fprintf(os.Stderr, "conn %d burst %d: wrong bytes (first 16: %x)\n", ci, i, buf[:min(16, len(buf))])
		}
		if _, err := rwc.Write([]byte{'k'}); err != nil {
			fail("burst %d: ack: %v", i, err)
			return
		}
	}
}

// runLoad sends POST /echo requests over one keep-alive Transport.
func runLoad(c *checker, n, parallel, maxBody int) {
	var dials int64
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: parallel,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				atomic.AddInt64(&dials, 1)
			}
			return conn, err
		}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	fixed := []int{100, 1000, 4096, 65536, 100000, maxBody}
	runParallel(n, parallel, func(i int) {
		rng := rand.New(rand.NewSource(int64(i) + 1))
		size := 0
		if i < len(fixed) {
			size = fixed[i]
		} else {
			size = int(100 * math.Pow(float64(maxBody)/100, rng.Float64()))
		}
		body := make([]byte, size)
		rng.Read(body)
		var rd io.Reader = bytes.NewReader(body)
		if i%3 == 2 {
			rd = struct{ io.Reader }{bufio.NewReader(rd)} // unknown length: chunked
		}
		atomic.AddInt64(&c.res.LoadRequests, 1)
		err := func() error {
			resp, err := client.Post(c.target+"/echo", "application/octet-stream", rd)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("reading answer: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			if !bytes.Equal(got, body) {
				return fmt.Errorf("answer of %d bytes differs from the body", len(got))
			}
			return nil
		}()
		if err != nil {
			atomic.AddInt64(&c.res.LoadErrors, 1)
			fmt.Fprintf(os.Stderr, "load %d (%d bytes): %v\n", i, size, err)
		}
	})
	c.res.LoadDials = atomic.LoadInt64(&dials)
}
