// hitcost: calls one non-inlined function in a tight loop and reports what each call
// cost, so a uprobe's cost per hit can be measured by the instruction it sits on
// (bench/hit_cost.py attaches a bare probe to one instruction of these functions,
// runs a batch with and without it, and takes the difference).
//
// Protocol (one line per command on stdin, one answer on stdout):
//
//	run <function> <calls>  ->  RESULT <function> <calls> <wall_ns> <thread_cpu_ns>
//
// The calling goroutine is locked to its OS thread, and the CPU time is that
// thread's (user + system, getrusage RUSAGE_THREAD): a uprobe's trap and
// single-step are system time of the thread that hits it, so the figure is not
// diluted by other load on the machine the way wall-clock time is.
//
// The Go functions have the prologue shapes the Go compiler emits (stack check by
// `cmp rsp` or `lea r12`, push rbp, sub rsp, a RET); the assembly ones (amd64)
// isolate single instructions: nop, nop5, jmp, call, push, mov.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var sink int

// leaf has no frame and no stack check: its first instruction is its body.
//
//go:noinline
func leaf(x int) int { return x*3 + 1 }

// small calls another function, so it checks the stack (`cmp rsp, [r14+0x10]`,
// `jbe`) and builds a frame (`push rbp`, `mov rbp, rsp`, `sub rsp, N`).
//
//go:noinline
func small(x int) int { return leaf(x) + 1 }

// big has a frame large enough that the stack check is `lea r12, [rsp-N]`,
// `cmp r12, [r14+0x10]`, `jbe`.
//
//go:noinline
func big(x int) int {
	var buf [96]int
	for i := range buf {
		buf[i] = x + i
	}
	return leaf(buf[x&63])
}

var functions = map[string]func(){
	"leaf":  func() { sink = leaf(sink) },
	"small": func() { sink = small(sink) },
	"big":   func() { sink = big(sink & 15) },
}

func main() {
	runtime.LockOSThread()
	for name, f := range asmFunctions {
		functions[name] = f
	}
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	fmt.Fprintln(out, "ready", os.Getpid())
	out.Flush()
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) != 3 || fields[0] != "run" {
			fmt.Fprintf(out, "ERROR bad command %q\n", in.Text())
			out.Flush()
			continue
		}
		f, ok := functions[fields[1]]
		n, err := strconv.Atoi(fields[2])
		if !ok || err != nil || n <= 0 {
			fmt.Fprintf(out, "ERROR unknown function or count %q\n", in.Text())
			out.Flush()
			continue
		}
		cpu0, wall0 := threadCPU(), time.Now()
		for i := 0; i < n; i++ {
			f()
		}
		wall, cpu := time.Since(wall0), threadCPU()-cpu0
		fmt.Fprintf(out, "RESULT %s %d %d %d\n", fields[1], n, wall.Nanoseconds(), cpu)
		out.Flush()
	}
}

// threadCPU is the calling thread's user + system CPU time in nanoseconds.
func threadCPU() int64 {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
