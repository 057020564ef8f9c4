//go:build go1.24 && (go1.26 || goexperiment.swissmap)

package main

import (
	"net/http"
	"unsafe"
)

// Swiss tables grow a whole table at once: there is no mid-growth state to catch.
const classicMaps = false

func tpInOldBuckets(http.Header) (growing, inOld bool) { return false, false }

// Mirrors of internal/runtime/maps.Map and table (Go 1.24-1.27), only to know, in
// the test program itself, where Traceparent is in go_header.h's walk order.
type swissMap struct {
	used   uint64
	seed   uintptr
	dirPtr unsafe.Pointer
	dirLen int
}

type swissTable struct {
	used       uint16
	capacity   uint16
	growthLeft uint16
	localDepth uint8
	index      int
	groups     unsafe.Pointer
	lengthMask uint64
}

const (
	groupSize = 8 + 8*(16+24)
	slotSize  = 16 + 24
)

// walkInfo: Traceparent's position in the walk order (directory order, each table
// once, groups, slots; -1 if absent), the number of live entries, and false (no
// overflow buckets in Swiss tables).
func walkInfo(h http.Header) (pos, total int, inOverflow bool) {
	pos = -1
	m := *(**swissMap)(unsafe.Pointer(&h))
	if m == nil || m.dirPtr == nil {
		return
	}
	visit := func(g unsafe.Pointer) {
		ctrl := *(*uint64)(g)
		for s := uintptr(0); s < 8; s++ {
			if (ctrl>>(8*s))&0x80 != 0 {
				continue
			}
			key := unsafe.Add(g, 8+s*slotSize)
			if splitGroups {
				key = unsafe.Add(g, 8+s*16)
			}
			if *(*string)(key) == "Traceparent" {
				pos = total
			}
			total++
		}
	}
	if m.dirLen == 0 {
		visit(m.dirPtr)
		return
	}
	var prev *swissTable
	for i := 0; i < m.dirLen; i++ {
		t := *(**swissTable)(unsafe.Add(m.dirPtr, i*8))
		if t == prev {
			continue
		}
		prev = t
		for gi := uint64(0); gi <= t.lengthMask; gi++ {
			visit(unsafe.Add(t.groups, uintptr(gi)*groupSize))
		}
	}
	return
}
