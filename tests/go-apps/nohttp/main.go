// Command nohttp is a Go program without net/http: gosight's tests use it to check
// that a target lacking a probed function gets one clear log line (the probe
// stands down) and is left alone. It prints "ready" and sleeps until killed.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	fmt.Println("ready")
	os.Stdout.Sync()
	for {
		time.Sleep(time.Hour)
	}
}
