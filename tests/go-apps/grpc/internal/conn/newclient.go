//go:build !grpc_dial

// Package conn creates the apps' one shared *grpc.ClientConn (plaintext, no
// TLS). grpc.NewClient appeared in grpc-go 1.63; builds against an older
// grpc-go (1.60) pass -tags grpc_dial to use grpc.Dial instead (see build.sh).
package conn

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// API names the constructor this build uses.
const API = "grpc.NewClient"

// New returns a ClientConn to target with insecure (plaintext h2c) credentials.
// It does not connect until the first RPC.
func New(target string) (*grpc.ClientConn, error) {
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}
