// Command httpserver is a small net/http server that gosight's end-to-end
// tests instrument with eBPF. It has no third-party dependencies and builds
// with Go 1.22 and later (it uses Go 1.22 ServeMux method and {wildcard}
// patterns). Each route exercises one thing:
//
//	GET  /users/{id}   200 JSON {"id":"<id>"}: span name / http.route from a
//	                   wildcard pattern, path vs. route, status code 200
//	GET  /missing      404 set by the handler: non-2xx status capture
//	GET  /fail         500: error status on server spans
//	GET  /sleep/{ms}   sleeps ms milliseconds then 200: span duration
//	GET  /deep/{n}     recursion n levels deep with a 256-byte frame per level,
//	                   so the goroutine stack grows (and moves) several times
//	                   during the request: goroutine tracking across stack
//	                   copies
//	POST /echo         echoes the request body with 201: request method and
//	                   body/content-length handling
//	GET  /health       200 from Write alone (no explicit WriteHeader): implicit
//	                   status capture
//	GET  /work/{us}    about us microseconds of CPU work (calibrated at start-up),
//	                   then 200: a route with real work, for the cost benchmark
//	GET  /stream/{kb}  kb KiB written 1 KiB at a time, chunked: most of the
//	                   response leaves while the handler runs (those socket
//	                   writes must not end the span), the rest after it returns
//	GET  /flushed/{how} a Content-Length body flushed by the handler itself, so
//	                   nothing is sent after it returns (the span ends at the
//	                   keep-alive read of the next request, or at the close)
//	GET  /panic        the handler panics (http.ErrAbortHandler): net/http
//	                   closes the connection without a response, and no span
//	                   is made for it
//	anything else      ServeMux's own 404 (no handler of ours runs)
//
// Flags: -addr (default 127.0.0.1:8080; port 0 picks a free port),
// -work-rounds-per-ms (the calibration of /work, printed to stderr). After the
// listener is open it prints exactly one line, "listening on <host:port>", to
// stdout, so a test can start it with -addr 127.0.0.1:0 and read the port.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	perMs := flag.Int("work-rounds-per-ms", 0, "rounds of /work per millisecond (0: measured at start-up; a benchmark passes one value to every run so they all do the same work)")
	flag.Parse()
	if *perMs > 0 {
		roundsPerMs = *perMs
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id")})
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not here", http.StatusNotFound)
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "failed on purpose", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /sleep/{ms}", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.PathValue("ms"))
		if err != nil || ms < 0 {
			http.Error(w, "bad ms", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %dms\n", ms)
	})
	mux.HandleFunc("GET /deep/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 100000 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d\n", deep(n))
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	})
	mux.HandleFunc("GET /work/{us}", func(w http.ResponseWriter, r *http.Request) {
		us, err := strconv.Atoi(r.PathValue("us"))
		if err != nil || us < 0 || us > 1_000_000 {
			http.Error(w, "bad us", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d\n", work(time.Duration(us)*time.Microsecond))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n")) // implicit 200
	})

	mux.HandleFunc("GET /stream/{kb}", func(w http.ResponseWriter, r *http.Request) {
		kb, err := strconv.Atoi(r.PathValue("kb"))
		if err != nil || kb < 0 || kb > 65536 {
			http.Error(w, "bad kb", http.StatusBadRequest)
			return
		}
		chunk := make([]byte, 1024)
		for i := range chunk {
			chunk[i] = 'a' + byte(i%26)
		}
		for i := 0; i < kb; i++ {
			w.Write(chunk)
		}
	})
	mux.HandleFunc("GET /flushed/{how}", func(w http.ResponseWriter, r *http.Request) {
		body := []byte("flushed before the handler returned\n")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		w.(http.Flusher).Flush()
	})

	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "work: %d rounds per ms\n", roundsPerMs)
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}

// deep recurses n levels. Each level keeps a 256-byte array live across the
// recursive call (the frame is ~0.5 KiB on amd64), so /deep/100 needs ~50 KiB
// of stack and the goroutine's initial 8 KiB stack is grown (copied) 3 times.
//
//go:noinline
func deep(n int) int {
	var buf [256]byte
	for i := range buf {
		buf[i] = byte(n + i)
	}
	if n == 0 {
		return int(buf[0])
	}
	sum := deep(n - 1)
	for _, b := range buf {
		sum += int(b)
	}
	return sum
}

// roundsPerMs is how many hashing rounds of work take a millisecond of CPU on
// this machine, measured once at start-up (or given with -work-rounds-per-ms).
var roundsPerMs = func() int {
	const n = 20000
	start := time.Now()
	hash(n)
	return int(float64(n) / (float64(time.Since(start)) / float64(time.Millisecond)))
}()

// work does about d of CPU work (a fixed number of rounds, so an instrumented
// run does the same work as a plain one) and returns the hash.
func work(d time.Duration) uint64 {
	return hash(int(d.Microseconds()) * roundsPerMs / 1000)
}

//go:noinline
func hash(rounds int) uint64 {
	h := uint64(14695981039346656037)
	for r := 0; r < rounds; r++ {
		for i := 0; i < 64; i++ {
			h = (h ^ uint64(i)) * 1099511628211
		}
	}
	return h
}
