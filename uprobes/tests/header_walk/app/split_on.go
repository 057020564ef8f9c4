//go:build goexperiment.mapsplitgroup

package main

// GOEXPERIMENT=mapsplitgroup (Go >= 1.27): Swiss groups hold keys[8] then elems[8].
const splitGroups = true
