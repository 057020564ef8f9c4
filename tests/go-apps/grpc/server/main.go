// Command server is a plaintext (h2c, no TLS) gRPC server that gosight's
// end-to-end tests instrument with eBPF. It serves the standard health service
// grpc.health.v1.Health with its own HealthServer (generated code shipped in
// grpc-go, no protoc), so the behaviour is fixed whatever the grpc-go release:
//
//	Check(service)  ""/"ok" -> SERVING; "fail" -> error with code Unavailable
//	                (14); any other name -> error with code NotFound (5), as the
//	                stock health server answers for an unknown service.
//	                With -http-next, the handler first makes GET
//	                <http-next>/hop (net/http, the handler's context, one shared
//	                http.Client) and answers code Internal (13) if that fails
//	                (transport error or status other than 200).
//	Watch(service)  server streaming: sends 3 messages (SERVING for ""/"ok",
//	                NOT_SERVING for "fail", SERVICE_UNKNOWN otherwise),
//	                -watch-interval apart, then returns OK.
//	List            grpc-go releases that have it: Unimplemented.
//
// For every Check and Watch RPC the server prints one line to stdout:
//
//	incoming traceparent: <value>
//
// where <value> is every "traceparent" metadata value the RPC carried, joined
// with "," (empty when there was none; a duplicate shows as two values). With
// -http-next, each Check also prints "hop answer: <body>" (the downstream's
// answer, e.g. tests/go-apps/chain's JSON with the traceparent it received)
// after the traceparent line.
//
// HTTP-to-gRPC bridge: with -http-addr the process also serves HTTP (net/http):
//
//	GET /grpc?service=X  calls Health/Check(X) on -grpc-target (one shared
//	                     ClientConn, the request's context r.Context()) and
//	                     answers 200 with one JSON line
//	                     {"status":S,"grpc_code":N,"incoming_traceparent":T}
//	                     (plus "error":E when N != 0): S is the health status
//	                     name ("SERVING", ...; "" on error), N the gRPC code of
//	                     the call, T every Traceparent header value the HTTP
//	                     request carried, joined with "," ("" if none).
//
// so the chain HTTP client -> bridge (HTTP) -> server (gRPC, -http-next) ->
// tests/go-apps/chain (HTTP leaf) is built from these binaries.
//
// Flags: -addr (gRPC listen address, default 127.0.0.1:0), -http-addr (bridge
// listen address; empty = no bridge), -grpc-target (host:port the bridge
// calls; default: this process's own gRPC address), -http-next (base URL such
// as http://127.0.0.1:40001), -watch-interval (default 10ms). Once the
// listeners are open it prints "listening on <host:port>" (gRPC) as its first
// stdout line and, with -http-addr, "http listening on <host:port>" as the
// second.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"gosight.dev/testapps/grpc/internal/conn"
)

var stdoutMu sync.Mutex

func printLine(format string, args ...any) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
	httpNext      string
	httpClient    *http.Client
	watchInterval time.Duration
}

// incomingTraceparent returns every traceparent metadata value, joined by ",".
func incomingTraceparent(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("traceparent"), ",")
}

func (s *healthServer) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	printLine("incoming traceparent: %s", incomingTraceparent(ctx))
	if s.httpNext != "" {
		body, err := s.hop(ctx)
		if err != nil {
			printLine("hop answer: error: %v", err)
			return nil, status.Errorf(codes.Internal, "http-next: %v", err)
		}
		printLine("hop answer: %s", body)
	}
	switch req.GetService() {
	case "", "ok":
		return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
	case "fail":
		return nil, status.Error(codes.Unavailable, `service "fail" is unavailable on purpose`)
	default:
		return nil, status.Error(codes.NotFound, "unknown service")
	}
}

func (s *healthServer) hop(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.httpNext, "/")+"/hop", nil)
	if err != nil {
		return "", err
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

func (s *healthServer) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc_health_v1.Health_WatchServer) error {
	ctx := stream.Context()
	printLine("incoming traceparent: %s", incomingTraceparent(ctx))
	st := grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN
	switch req.GetService() {
	case "", "ok":
		st = grpc_health_v1.HealthCheckResponse_SERVING
	case "fail":
		st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
	}
	for k := 0; k < 3; k++ {
		if k > 0 && s.watchInterval > 0 {
			select {
			case <-time.After(s.watchInterval):
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		if err := stream.Send(&grpc_health_v1.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
	}
	return nil
}

type bridgeAnswer struct {
	Status              string `json:"status"`
	GRPCCode            int    `json:"grpc_code"`
	IncomingTraceparent string `json:"incoming_traceparent"`
	Error               string `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "gRPC listen address (port 0 picks a free port)")
	httpAddr := flag.String("http-addr", "", "HTTP bridge listen address (empty = no bridge)")
	grpcTarget := flag.String("grpc-target", "", "host:port of the gRPC server the bridge calls (default: this process's own gRPC address)")
	httpNext := flag.String("http-next", "", "base URL (http://host:port) that Check calls GET <http-next>/hop on before answering")
	watchInterval := flag.Duration("watch-interval", 10*time.Millisecond, "pause between the messages of a Watch stream")
	flag.Parse()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var httpLis net.Listener
	if *httpAddr != "" {
		if httpLis, err = net.Listen("tcp", *httpAddr); err != nil {
			log.Fatal(err)
		}
	}

	gs := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(gs, &healthServer{
		httpNext:      *httpNext,
		httpClient:    &http.Client{},
		watchInterval: *watchInterval,
	})

	if httpLis != nil {
		target := *grpcTarget
		if target == "" {
			target = lis.Addr().String()
		}
		cc, err := conn.New(target)
		if err != nil {
			log.Fatal(err)
		}
		health := grpc_health_v1.NewHealthClient(cc)
		mux := http.NewServeMux()
		mux.HandleFunc("GET /grpc", func(w http.ResponseWriter, r *http.Request) {
			ans := bridgeAnswer{IncomingTraceparent: strings.Join(r.Header.Values("Traceparent"), ",")}
			resp, err := health.Check(r.Context(), &grpc_health_v1.HealthCheckRequest{Service: r.URL.Query().Get("service")})
			if err != nil {
				ans.GRPCCode = int(status.Code(err))
				ans.Error = err.Error()
			} else {
				ans.Status = resp.GetStatus().String()
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			json.NewEncoder(w).Encode(ans)
		})
		go func() {
			if err := http.Serve(httpLis, mux); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Fatal(err)
			}
		}()
	}

	printLine("listening on %s", lis.Addr())
	if httpLis != nil {
		printLine("http listening on %s", httpLis.Addr())
	}
	os.Stdout.Sync()
	if err := gs.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
