// redisapp: an HTTP service that uses Redis through github.com/redis/go-redis/v9,
// for gosight's Redis client probe (tests/e2e/tests/redis.rs). Each route runs
// known commands on the handler's goroutine with the request's context:
//
//	/set?key=K&value=V  SET K V
//	/get?key=K          GET K (a missing key is redis.Nil: 404, not an error)
//	/pipeline?key=K     one pipeline: SET K 1, INCR K, GET K, EXPIRE K 60
//	/tx?key=K           one MULTI/EXEC (TxPipelined): INCR K, INCRBY K 5, GET K
//	/wrongtype?key=K    SET K text, then LPUSH K x: the server's WRONGTYPE error
//	/config             CONFIG GET maxmemory (a command with a sub-command)
//	/async?key=K        GET K from another goroutine, with the request's context
//	/health             PING
//
// Environment: PORT (HTTP, default 8080), REDIS_ADDR (default 127.0.0.1:6379),
// REDIS_DB (default 0).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := env("REDIS_ADDR", "127.0.0.1:6379")
	db, err := strconv.Atoi(env("REDIS_DB", "0"))
	if err != nil {
		log.Fatalf("REDIS_DB: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db, Protocol: 2, MaxRetries: -1})
	defer rdb.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		reply(w, rdb.Set(r.Context(), q.Get("key"), q.Get("value"), 0).Err(), "OK")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, err := rdb.Get(r.Context(), r.URL.Query().Get("key")).Result()
		if errors.Is(err, redis.Nil) {
			http.Error(w, "missing", http.StatusNotFound)
			return
		}
		reply(w, err, v)
	})
	mux.HandleFunc("/pipeline", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		var get *redis.StringCmd
		_, err := rdb.Pipelined(r.Context(), func(p redis.Pipeliner) error {
			p.Set(r.Context(), key, 1, 0)
			p.Incr(r.Context(), key)
			get = p.Get(r.Context(), key)
			p.Expire(r.Context(), key, time.Minute)
			return nil
		})
		reply(w, err, get.Val())
	})
	mux.HandleFunc("/tx", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		var get *redis.StringCmd
		_, err := rdb.TxPipelined(r.Context(), func(p redis.Pipeliner) error {
			p.Incr(r.Context(), key)
			p.IncrBy(r.Context(), key, 5)
			get = p.Get(r.Context(), key)
			return nil
		})
		reply(w, err, get.Val())
	})
	mux.HandleFunc("/wrongtype", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if err := rdb.Set(r.Context(), key, "text", 0).Err(); err != nil {
			reply(w, err, "")
			return
		}
		reply(w, rdb.LPush(r.Context(), key, "x").Err(), "unexpected success")
	})
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		v, err := rdb.ConfigGet(r.Context(), "maxmemory").Result()
		reply(w, err, fmt.Sprint(v))
	})
	mux.HandleFunc("/async", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan error, 1)
		go func(ctx context.Context) {
			done <- rdb.Get(ctx, r.URL.Query().Get("key")).Err()
		}(r.Context())
		err := <-done
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		reply(w, err, "done")
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, rdb.Ping(r.Context()).Err(), "ok")
	})
	port := env("PORT", "8080")
	log.Printf("redisapp listening on 127.0.0.1:%s (redis %s db %d)", port, addr, db)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, mux))
}

func reply(w http.ResponseWriter, err error, ok string) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, ok)
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
