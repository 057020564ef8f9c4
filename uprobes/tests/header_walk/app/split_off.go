//go:build !goexperiment.mapsplitgroup

package main

// Swiss groups (if any) interleave key/elem slots.
const splitGroups = false
