// Test target for uprobes/tests/header_walk.rs: calls Probe(h) for http.Header maps
// of many shapes (sizes 1-2000, Traceparent early/late/absent/malformed, deleted
// entries, classic maps caught mid-growth) and prints each case before the call:
//
//	CASE <name> <map address> <len> <expected status> <expected value or -> <valid 0/1> <note>
//
// Expected status is go_header.h's GO_HDR_*: 1 found, 0 absent, -1 key present but
// first value not 55 bytes, -2 beyond the walk's bounds.
//
// Protocol on stdin/stdout: prints "READY <pid> <classic|swiss|swiss-split>", then per command
// line: "cases" runs every case, "bench <name> <n>" calls Bench(h) n times on a
// bench map, "quit" exits; each command ends with "DONE".
package main

import (
	"bufio"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"strings"
)

//go:noinline
func Probe(h http.Header) int { return len(h) }

//go:noinline
func Bench(h http.Header) int { return len(h) }

type testCase struct {
	name   string
	h      http.Header
	status int    // expected GO_HDR_* status
	value  string // expected first value when status == 1
	valid  bool   // expected traceparent_parse result
	note   string
}

var rng = rand.New(rand.NewSource(1))

func validTP() string {
	return fmt.Sprintf("00-%016x%016x-%016x-%02x", rng.Uint64()|1, rng.Uint64(), rng.Uint64()|1, rng.Intn(2))
}

// Header names that are not Traceparent, 11-byte near misses first (they reach the
// byte comparison), then ordinary and generated names.
var fillers = func() []string {
	names := []string{
		"Traceparenu", "Accept", "Sraceparent", "User-Agent", "Tracepbrent", "Retry-After",
		"Content-Type", "Tracestate", "Accept-Encoding", "X-Request-Id", "Baggage", "Cookie",
		"Authorization", "X-Forwarded-For", "Content-Length", "Connection",
	}
	for i := len(names); i < 4000; i++ {
		if i%3 == 0 {
			names = append(names, fmt.Sprintf("X-Decoy-%03d", i%1000)[:11]) // 11 bytes
		} else {
			names = append(names, fmt.Sprintf("X-Filler-%04d", i))
		}
	}
	seen := map[string]bool{}
	out := names[:0]
	for _, n := range names {
		n = http.CanonicalHeaderKey(n)
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}()

// build returns a header with n entries; when pos >= 0, the pos-th inserted one is
// Traceparent with the given values.
func build(n, pos int, values ...string) http.Header {
	h := http.Header{}
	f := 0
	for i := 0; i < n; i++ {
		if i == pos {
			h["Traceparent"] = values
			continue
		}
		h.Set(fillers[f], validTP())
		f++
	}
	return h
}

func cases() []testCase {
	var cs []testCase
	add := func(c testCase) { cs = append(cs, c) }
	for _, n := range []int{1, 3, 8, 9, 20, 60, 120, 128, 400} {
		add(testCase{name: fmt.Sprintf("absent-%d", n), h: build(n, -1), status: 0})
		v := validTP()
		add(testCase{name: fmt.Sprintf("early-%d", n), h: build(n, 0, v), status: 1, value: v, valid: true})
		if n > 1 {
			v = validTP()
			add(testCase{name: fmt.Sprintf("late-%d", n), h: build(n, n-1, v), status: 1, value: v, valid: true})
			v = validTP()
			add(testCase{name: fmt.Sprintf("middle-%d", n), h: build(n, n/2, v), status: 1, value: v, valid: true})
		}
	}

	// Malformed values: 55 bytes are found but do not parse; other lengths are not found.
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	bad := map[string]string{
		"upper":      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"zero-trace": "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"zero-span":  "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"version-ff": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"dash":       "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"dash2":      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
		"nonhex":     "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"flags":      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
		"version-0g": "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for _, n := range []int{8, 20} {
		for _, k := range []string{"upper", "zero-trace", "zero-span", "version-ff", "dash", "dash2", "nonhex", "flags", "version-0g"} {
			add(testCase{name: fmt.Sprintf("bad-%s-%d", k, n), h: build(n, n/2, bad[k]), status: 1, value: bad[k], valid: false})
		}
		v01 := "01" + good[2:]
		add(testCase{name: fmt.Sprintf("version-01-%d", n), h: build(n, n/2, v01), status: 1, value: v01, valid: true})
		add(testCase{name: fmt.Sprintf("short-%d", n), h: build(n, n/2, good[:54]), status: -1})
		add(testCase{name: fmt.Sprintf("long-%d", n), h: build(n, n/2, good+"0"), status: -1})
	}

	v1, v2 := validTP(), validTP()
	add(testCase{name: "two-values", h: build(20, 5, v1, v2), status: 1, value: v1, valid: true})
	add(testCase{name: "second-value-valid", h: build(20, 5, good[:54], v2), status: -1, note: "only-the-first-value-counts"})
	add(testCase{name: "empty-values", h: build(20, 5), status: -1})
	hn := build(20, -1)
	hn["Traceparent"] = nil
	add(testCase{name: "nil-values", h: hn, status: -1})
	hl := build(20, -1)
	hl["traceparent"] = []string{validTP()}
	add(testCase{name: "lowercase-key", h: hl, status: 1, value: hl["traceparent"][0], valid: true, note: "grpc-metadata-keys-are-lower-case"})
	hx := build(20, -1)
	hx["tRaceparent"] = []string{validTP()}
	add(testCase{name: "other-case-key", h: hx, status: 0})
	hd := build(20, 3, validTP())
	hd.Del("Traceparent")
	add(testCase{name: "deleted", h: hd, status: 0})
	for _, n := range []int{8, 60} {
		v := validTP()
		ht := build(n, n/2, v)
		for i := 0; i < n/3; i++ {
			ht.Del(fillers[i])
		}
		add(testCase{name: fmt.Sprintf("after-deletes-%d", n), h: ht, status: 1, value: v, valid: true})
	}
	// Realistic requests (few 11-byte keys): what the cost figures are about.
	browser := []string{"Accept", "Accept-Encoding", "Accept-Language", "Cache-Control", "Connection",
		"Cookie", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Upgrade-Insecure-Requests", "User-Agent", "Tracestate"}
	api := []string{"Accept", "Content-Type", "Content-Length", "User-Agent", "Accept-Encoding"}
	for _, r := range []struct {
		name  string
		names []string
		tp    bool
	}{{"browser-16", browser, true}, {"browser-15-no-tp", browser, false}, {"api-6", api, true}, {"api-5-no-tp", api, false}} {
		h := http.Header{}
		for _, n := range r.names {
			h.Set(n, "some value")
		}
		c := testCase{name: r.name, h: h, status: 0}
		if r.tp {
			c.value, c.status, c.valid = validTP(), 1, true
			h.Set("Traceparent", c.value)
		}
		add(c)
	}
	add(testCase{name: "empty", h: http.Header{}, status: 0})
	add(testCase{name: "nil", h: nil, status: 0})
	add(testCase{name: "limit-2000", h: build(2000, -1), status: -2, note: "beyond-the-walk-bounds"})
	// Within the size bounds, but 400 11-byte keys to compare: the step budget ends it.
	h11 := http.Header{}
	for i := 0; i < 400; i++ {
		h11.Set(fmt.Sprintf("X-K-%07d", i), "v")
	}
	add(testCase{name: "limit-steps-400", h: h11, status: -2, note: "400-candidate-keys"})

	// Traceparent as the very last live entry the walk meets: the walk's early stop
	// (once `count`/`used` entries are seen) must not stop before it.
	for _, n := range []int{9, 20, 60, 120} {
		add(lastInWalkCase(n))
	}
	if classicMaps {
		add(growCase("grow-old", true))
		add(growCase("grow-new", false))
		add(overflowCase())
	}
	for i := range cs {
		if pos, total, _ := walkInfo(cs[i].h); pos >= 0 {
			cs[i].note = fmt.Sprintf("%s,walk-pos=%d/%d", cs[i].note, pos, total)
		}
	}
	return cs
}

func lastInWalkCase(n int) testCase {
	for try := 0; try < 20000; try++ {
		v := validTP()
		h := build(n, try%n, v)
		if pos, total, _ := walkInfo(h); pos == total-1 && total == n {
			return testCase{name: fmt.Sprintf("last-in-walk-%d", n), h: h, status: 1, value: v, valid: true,
				note: fmt.Sprintf("tries=%d", try+1)}
		}
	}
	panic("could not place Traceparent last in walk order")
}

// overflowCase: a classic map with Traceparent in an overflow bucket.
func overflowCase() testCase {
	for try := 0; try < 20000; try++ {
		v := validTP()
		h := build(52, 51, v)
		if _, _, inOverflow := walkInfo(h); inOverflow {
			return testCase{name: "in-overflow", h: h, status: 1, value: v, valid: true,
				note: fmt.Sprintf("tries=%d", try+1)}
		}
	}
	panic("could not place Traceparent in an overflow bucket")
}

// growCase builds a classic map caught in the middle of growing from 8 to 16
// buckets (the 53rd insert starts the growth and evacuates at most 2 of the 8 old
// buckets), with Traceparent still in a not-yet-evacuated old bucket (inOld) or
// inserted by the growing insert itself, into the new buckets.
func growCase(name string, inOld bool) testCase {
	for try := 0; try < 1000; try++ {
		v := validTP()
		var h http.Header
		if inOld {
			h = build(53, 0, v)
		} else {
			h = build(53, 52, v)
		}
		growing, old := tpInOldBuckets(h)
		if growing && old == inOld {
			return testCase{name: name, h: h, status: 1, value: v, valid: true,
				note: fmt.Sprintf("growing,in-old=%v,tries=%d", inOld, try+1)}
		}
	}
	panic("could not catch a map mid-growth")
}

func main() {
	layout := "swiss"
	if classicMaps {
		layout = "classic"
	} else if splitGroups {
		layout = "swiss-split"
	}
	cs := cases()
	byName := map[string]http.Header{}
	for _, c := range cs {
		byName[c.name] = c.h
	}
	fmt.Printf("READY %d %s\n", os.Getpid(), layout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 1 && f[0] == "cases":
			for _, c := range cs {
				value := c.value
				if value == "" {
					value = "-"
				}
				note := strings.TrimPrefix(c.note, ",")
				if note == "" {
					note = "-"
				}
				valid := 0
				if c.valid {
					valid = 1
				}
				fmt.Printf("CASE %s %p %d %d %s %d %s\n", c.name, c.h, len(c.h), c.status, value, valid, note)
				Probe(c.h)
			}
		case len(f) == 3 && f[0] == "bench":
			h, ok := byName[f[1]]
			n, err := strconv.Atoi(f[2])
			if !ok || err != nil {
				fmt.Println("ERROR bad bench command")
				continue
			}
			for i := 0; i < n; i++ {
				Bench(h)
			}
		case len(f) == 1 && f[0] == "quit":
			fmt.Println("DONE")
			return
		default:
			fmt.Println("ERROR unknown command")
			continue
		}
		fmt.Println("DONE")
	}
}
