//go:build !go1.24 || (!go1.26 && !goexperiment.swissmap)

package main

import (
	"net/http"
	"unsafe"
)

const classicMaps = true

// Mirror of runtime.hmap (Go 1.22-1.25 without Swiss maps): only to check, in the
// test program itself, that a case really caught a map mid-growth.
type hmap struct {
	count      int
	flags      uint8
	B          uint8
	noverflow  uint16
	hash0      uint32
	buckets    unsafe.Pointer
	oldbuckets unsafe.Pointer
	nevacuate  uintptr
	extra      unsafe.Pointer
}

const (
	bucketSize   = 8 + 8*16 + 8*24 + 8
	sameSizeGrow = 8
	minTopHash   = 5
)

// tpInOldBuckets: whether h is growing, and whether Traceparent is in one of its
// not-yet-evacuated old buckets.
func tpInOldBuckets(h http.Header) (growing, inOld bool) {
	m := *(**hmap)(unsafe.Pointer(&h))
	if m == nil || m.oldbuckets == nil {
		return false, false
	}
	n := uintptr(1) << m.B
	if m.flags&sameSizeGrow == 0 {
		n >>= 1
	}
	for i := uintptr(0); i < n; i++ {
		for b := unsafe.Add(m.oldbuckets, i*bucketSize); b != nil; b = *(*unsafe.Pointer)(unsafe.Add(b, bucketSize-8)) {
			for s := uintptr(0); s < 8; s++ {
				if *(*uint8)(unsafe.Add(b, s)) < minTopHash {
					continue
				}
				if *(*string)(unsafe.Add(b, 8+16*s)) == "Traceparent" {
					return true, true
				}
			}
		}
	}
	return true, false
}

// walkInfo: Traceparent's position in go_header.h's walk order (old buckets, then
// buckets, each followed by its overflow chain; -1 if absent), the number of live
// entries, and whether Traceparent sits in an overflow bucket.
func walkInfo(h http.Header) (pos, total int, inOverflow bool) {
	pos = -1
	m := *(**hmap)(unsafe.Pointer(&h))
	if m == nil || m.buckets == nil {
		return
	}
	nNew := uintptr(1) << m.B
	visit := func(arr unsafe.Pointer, n uintptr) {
		for i := uintptr(0); i < n; i++ {
			depth := 0
			for b := unsafe.Add(arr, i*bucketSize); b != nil; b = *(*unsafe.Pointer)(unsafe.Add(b, bucketSize-8)) {
				for s := uintptr(0); s < 8; s++ {
					if *(*uint8)(unsafe.Add(b, s)) < minTopHash {
						continue
					}
					if *(*string)(unsafe.Add(b, 8+16*s)) == "Traceparent" {
						pos, inOverflow = total, depth > 0
					}
					total++
				}
				depth++
			}
		}
	}
	if m.oldbuckets != nil {
		n := nNew
		if m.flags&sameSizeGrow == 0 {
			n >>= 1
		}
		visit(m.oldbuckets, n)
	}
	visit(m.buckets, nNew)
	return
}
