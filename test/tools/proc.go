package tools

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUSeconds is the user and system time of the processes so far.
func CPUSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		// After the command: state (0), ..., utime (11), stime (12).
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + st
	}
	return ticks / 100 // USER_HZ
}

// RSS is the processes' resident memory, KiB.
func RSS(pids []int) float64 {
	var kib float64
	for _, pid := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				kib += v
			}
		}
	}
	return kib
}
