// Command hijackserver is a net/http server that can hijack its connections (as
// websocket servers do): gosight's one-uprobe-hit server spans cannot end a
// hijacked request (its goroutine exits with no socket event after the handler),
// so for this binary gosight must keep its two-hit fallback (RET probes). Routes:
//
//	GET /plain    200 "ok\n"
//	GET /upgrade  hijacks the connection, answers "101 Switching Protocols",
//	              echoes one line, waits 50 ms, and closes
//
// Flags: -addr (port 0 picks a free port); prints "listening on <host:port>".
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		rw.WriteString(line)
		rw.Flush()
		time.Sleep(50 * time.Millisecond)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, mux))
}
