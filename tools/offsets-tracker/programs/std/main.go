// Command std is what offsets-tracker builds with every Go release to read the
// standard library's struct layouts from DWARF. The Go linker only describes
// types the program uses, so this program uses every standard-library type
// gosight's probes read: an HTTP server (net/http.Request, the unexported
// net/http.response behind http.ResponseWriter, net/url.URL), an HTTP client
// (net/http.Response), http.Header (map[string][]string: runtime map layouts,
// including the compiler-made noalg.map.group[string][]string of swiss maps),
// context.WithValue (context.valueCtx), net.TCPAddr, reflection and interface
// conversions (runtime itabs and internal/abi type descriptors).
//
// Nothing runs unless -serve is given: the tracker only builds it.
package main

import (
	"context"
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

func main() {
	serve := flag.String("serve", "", "listen address (empty: do nothing, the tracker only builds this)")
	get := flag.String("get", "", "URL to GET once")
	flag.Parse()
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
