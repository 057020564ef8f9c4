//go:build !amd64

package main

var asmFunctions = map[string]func(){}
