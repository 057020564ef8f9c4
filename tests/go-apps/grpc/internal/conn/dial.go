//go:build grpc_dial

// Package conn creates the apps' one shared *grpc.ClientConn (plaintext, no
// TLS). This file is the grpc.Dial variant for grpc-go releases without
// grpc.NewClient (before 1.63); select it with -tags grpc_dial.
package conn

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// API names the constructor this build uses.
const API = "grpc.Dial"

// New returns a ClientConn to target with insecure (plaintext h2c) credentials.
// grpc.Dial without WithBlock returns at once and connects in the background.
func New(target string) (*grpc.ClientConn, error) {
	return grpc.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}
