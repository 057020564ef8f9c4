// Command client sends grpc.health.v1.Health RPCs over one shared plaintext
// (h2c) *grpc.ClientConn (grpc.NewClient, or grpc.Dial in builds with
// -tags grpc_dial for grpc-go < 1.63) to tests/go-apps/grpc/server, for
// gosight's end-to-end tests.
//
// Flags:
//
//	-target HOST:PORT      server address (required)
//	-method M              check (Health/Check with -service), check-fail
//	                       (Health/Check with service "fail": code Unavailable)
//	                       or watch (server-streaming Health/Watch with
//	                       -service, read to the end); default check
//	-service NAME          service name in the request (default ""; "nosuch"
//	                       gives code NotFound with check)
//	-n N                   number of RPCs (default 1); ignored with -duration
//	-duration D            send RPCs for this long instead of -n
//	-concurrency C         goroutines sending RPCs at once, sharing the conn
//	-metadata-traceparent  send this value as "traceparent" in the outgoing
//	                       metadata of every RPC (an app with its own SDK)
//	-timeout D             per-RPC deadline (default 10s; 0 = none)
//	-wait-file F           before creating the conn and sending the first RPC,
//	                       print "ready" and wait (up to 30s) until F exists
//	                       (lets a test attach gosight first)
//	-warmup K              create the conn and send K RPCs (same method and
//	                       metadata) first, before "ready" and the -wait-file
//	                       wait, then send the -n (or -duration) RPCs on the
//	                       same conn: the connection exists, and has carried
//	                       calls, before gosight attaches
//
// Output (stdout): one JSON line per RPC, {"i":I,"code":N} where N is the gRPC
// status code (0 = OK), with "msgs":K (messages received) added for watch;
// warm-up RPCs are numbered -K..-1 and carry "warmup":true; then a final
// {"done":D,"errors":E} where D is the number of RPCs sent after the warm-up
// and E the number of those that ended with a code other than OK. Error texts
// go to stderr. The exit status is 0 unless the flags are bad, the conn cannot
// be created or a warm-up RPC fails (exit status 1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"gosight.dev/testapps/grpc/internal/conn"
)

type line struct {
	I      int  `json:"i"`
	Code   int  `json:"code"`
	Msgs   *int `json:"msgs,omitempty"`
	Warmup bool `json:"warmup,omitempty"`
}

type summary struct {
	Done   int `json:"done"`
	Errors int `json:"errors"`
}

func main() {
	target := flag.String("target", "", "server host:port (required)")
	n := flag.Int("n", 1, "number of RPCs (ignored with -duration)")
	method := flag.String("method", "check", "check, check-fail or watch")
	service := flag.String("service", "", "service name sent in the request (check, watch)")
	concurrency := flag.Int("concurrency", 1, "goroutines sending RPCs at once, sharing one ClientConn")
	traceparent := flag.String("metadata-traceparent", "", "send this traceparent in the outgoing metadata of every RPC")
	duration := flag.Duration("duration", 0, "send RPCs for this long instead of -n")
	timeout := flag.Duration("timeout", 10*time.Second, "per-RPC deadline (0 = none)")
	waitFile := flag.String("wait-file", "", "before the first RPC, print \"ready\" and wait (up to 30s) until this file exists (lets a test attach gosight first)")
	warmup := flag.Int("warmup", 0, "send this many RPCs on the conn before \"ready\" and the -wait-file wait")
	flag.Parse()

	if *target == "" || *n < 0 || *concurrency < 1 || *duration < 0 || *warmup < 0 ||
		(*method != "check" && *method != "check-fail" && *method != "watch") {
		fmt.Fprintln(os.Stderr, "client: need -target, -method check|check-fail|watch, -n >= 0, -concurrency >= 1, -duration >= 0")
		flag.Usage()
		os.Exit(2)
	}
	svc := *service
	if *method == "check-fail" {
		svc = "fail"
	}

	wait := func() {
		if *waitFile == "" {
			return
		}
		fmt.Println("ready")
		os.Stdout.Sync()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(*waitFile); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	newConn := func() *grpc.ClientConn {
		cc, err := conn.New(*target)
		if err != nil {
			fmt.Fprintf(os.Stderr, "client: %s(%q): %v\n", conn.API, *target, err)
			os.Exit(1)
		}
		return cc
	}
	if *warmup == 0 {
		wait()
	}
	cc := newConn()
	defer cc.Close()
	health := grpc_health_v1.NewHealthClient(cc)

	call := func(i int) line {
		ctx := context.Background()
		if *timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		if *traceparent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", *traceparent)
		}
		req := &grpc_health_v1.HealthCheckRequest{Service: svc}
		var err error
		l := line{I: i}
		if *method == "watch" {
			msgs := 0
			l.Msgs = &msgs
			var stream grpc_health_v1.Health_WatchClient
			stream, err = health.Watch(ctx, req)
			for err == nil {
				if _, err = stream.Recv(); err == nil {
					msgs++
				}
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
		} else {
			_, err = health.Check(ctx, req)
		}
		l.Code = int(status.Code(err))
		if l.Code != int(codes.OK) {
			fmt.Fprintf(os.Stderr, "client: rpc %d: %v\n", i, err)
		}
		return l
	}

	if *warmup > 0 {
		enc := json.NewEncoder(os.Stdout)
		for i := -*warmup; i < 0; i++ {
			l := call(i)
			l.Warmup = true
			enc.Encode(l)
			if l.Code != int(codes.OK) {
				os.Exit(1)
			}
		}
		wait()
	}

	var (
		mu   sync.Mutex // guards stdout and the counters
		errs int
		done int
		enc  = json.NewEncoder(os.Stdout)
		jobs = make(chan int)
		wg   sync.WaitGroup
	)
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				l := call(i)
				mu.Lock()
				done++
				if l.Code != int(codes.OK) {
					errs++
				}
				enc.Encode(l)
				mu.Unlock()
			}
		}()
	}
	if *duration > 0 {
		end := time.Now().Add(*duration)
		for i := 0; time.Now().Before(end); i++ {
			jobs <- i
		}
	} else {
		for i := 0; i < *n; i++ {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	enc.Encode(summary{Done: done, Errors: errs})
	os.Stdout.Sync()
}
