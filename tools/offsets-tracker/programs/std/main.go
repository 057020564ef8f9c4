// Command std is what offsets-tracker builds with every Go release to read the
// standard library's struct layouts from DWARF. The Go linker only describes
// types the program uses, so this program uses every standard-library type
// gosight's probes read: an HTTP server (net/http.Request, the unexported
// net/http.response behind http.ResponseWriter, net/url.URL), an HTTP client
// (net/http.Response), http.Header (map[string][]string: runtime map layouts,
// including the compiler-made noalg.map.group[string][]string of swiss maps),
// context.WithValue (context.valueCtx), net.TCPAddr, reflection and interface
// conversions (runtime itabs and internal/abi type descriptors), and
// database/sql through a driver that does nothing (database/sql.driverConn,
// Stmt, connStmt, Tx: queries, prepared statements, transactions).
//
// Nothing runs unless -serve is given: the tracker only builds it.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
)

type ctxKey struct{}

// describe keeps reflection (and with it the abi type descriptors) alive.
func describe(v any) string {
	t := reflect.TypeOf(v)
	s := t.String() + " " + t.Kind().String() + " " + t.PkgPath()
	if t.Kind() == reflect.Pointer {
		s += " " + t.Elem().String()
	}
	if t.Kind() == reflect.Struct && t.NumField() > 0 {
		s += " " + t.Field(0).Name
	}
	return s
}

func handler(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), ctxKey{}, r.URL.Path)
	h := http.Header{}
	h.Set("X-Path", fmt.Sprint(ctx.Value(ctxKey{})))
	for k, v := range r.Header {
		h[k] = append(h[k], v...)
	}
	var addr net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	if ta, ok := addr.(*net.TCPAddr); ok {
		h.Set("X-Port", fmt.Sprint(ta.Port, ta.IP))
	}
	w.Header().Set("X-Method", r.Method+" "+r.Proto+" "+r.Host+" "+r.RemoteAddr+" "+r.URL.RawQuery+" "+r.URL.Scheme+" "+r.URL.Host)
	if r.TLS != nil {
		w.Header().Set("X-TLS", "1")
	}
	w.WriteHeader(http.StatusTeapot)
	fmt.Fprintln(w, describe(r), describe(w), describe(h), describe(addr), describe(*r.URL))
}

// nopDriver is a database/sql driver whose connections refuse everything: enough
// for the linker to keep database/sql's statement and transaction paths.
type nopDriver struct{}
type nopConn struct{}

func (nopDriver) Open(string) (driver.Conn, error)  { return nopConn{}, nil }
func (nopConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("nop") }
func (nopConn) Close() error                        { return nil }
func (nopConn) Begin() (driver.Tx, error)           { return nil, errors.New("nop") }

func useSQL(ctx context.Context, q string) {
	sql.Register("nop", nopDriver{})
	db, err := sql.Open("nop", "")
	if err != nil {
		return
	}
	defer db.Close()
	if rows, err := db.QueryContext(ctx, q); err == nil {
		rows.Close()
	}
	db.ExecContext(ctx, q)
	if st, err := db.PrepareContext(ctx, q); err == nil {
		st.QueryContext(ctx)
		st.ExecContext(ctx)
		st.Close()
	}
	if tx, err := db.BeginTx(ctx, nil); err == nil {
		tx.Commit()
		tx.Rollback()
	}
}

func main() {
	serve := flag.String("serve", "", "listen address (empty: do nothing, the tracker only builds this)")
	get := flag.String("get", "", "URL to GET once")
	query := flag.String("sql", "", "statement to run through database/sql's nop driver")
	flag.Parse()
	if *query != "" {
		useSQL(context.Background(), *query)
	}
	if *serve != "" {
		http.HandleFunc("/", handler)
		if err := http.ListenAndServe(*serve, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if *get != "" {
		u, err := url.Parse(*get)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ctx := context.WithValue(context.Background(), ctxKey{}, u.Host)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		fmt.Println(resp.StatusCode, describe(resp), len(resp.Header))
	}
}
