// Command goredis is what offsets-tracker builds against every go-redis v9
// release to read its struct layouts from DWARF: a client (baseClient, Options)
// that runs a command, a pipeline and a transaction (baseCmd through the
// commands' types). Nothing connects unless -addr is given.
package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "", "Redis address to use")
	flag.Parse()
	if *addr == "" {
		return
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: *addr, DB: 1})
	defer rdb.Close()
	fmt.Println(rdb.Get(ctx, "k").Result())
	fmt.Println(rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "k"); return nil }))
	fmt.Println(rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "k"); return nil }))
}
