// Command grpc is what offsets-tracker builds against every grpc-go release to
// read grpc's (and genproto's) struct layouts from DWARF. The Go linker only
// describes types the program uses, so this program has a gRPC server (the
// health service shipped in grpc-go: no protoc, no generated code of its own)
// with an interceptor that reads the peer (peer.Peer), and a client that makes
// a unary and a streaming call (clientStream, csAttempt, the HTTP/2 client
// transport and its loopy writer) and turns the result into a status and its
// proto (internal/status, genproto's googleapis/rpc/status.Status).
//
// grpc.Dial, not grpc.NewClient, because NewClient only exists from v1.63.
// The tracker edits the grpc requirement in a copy of go.mod and runs
// `go mod tidy` before building; nothing runs unless -serve or -call is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func peerInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok {
		fmt.Println(info.FullMethod, p.Addr, p.LocalAddr)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("fail")) > 0 {
		return nil, status.Error(codes.Unavailable, "failing on request")
	}
	return handler(ctx, req)
}

func serve(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(peerInterceptor))
	healthpb.RegisterHealthServer(s, health.NewServer())
	return s.Serve(lis)
}

func call(target string) error {
	cc, err := grpc.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "fail", "1")
	var p peer.Peer
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	st := status.Convert(err)
	var se interface{ GRPCStatus() *status.Status }
	fmt.Println(st.Code(), st.Proto().GetCode(), st.Proto().GetMessage(), errors.As(err, &se), p.Addr)
	stream, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	fmt.Println(resp.GetStatus())
	return nil
}

func main() {
	addr := flag.String("serve", "", "listen address (empty: no server; the tracker only builds this)")
	target := flag.String("call", "", "host:port to call (empty: no client)")
	flag.Parse()
	if *addr != "" {
		go func() {
			if err := serve(*addr); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}()
	}
	if *target != "" {
		if err := call(*target); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
