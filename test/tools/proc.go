package tools

import (
	"fmt"
	"os"
	"path/filepath"
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

// ThreadCPUSeconds is the time on CPU of the processes' threads that run,
// from the scheduler's own count (nanoseconds, where CPUSeconds counts
// 10 ms ticks): for processes that use little CPU over a short window.
// Threads that have exited are not counted.
func ThreadCPUSeconds(pids []int) float64 {
	var ns float64
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/schedstat", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				ns += v
			}
		}
	}
	return ns / 1e9
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

// HostCPU is the machine's CPU time so far, in USER_HZ ticks summed over its
// CPUs (/proc/stat): Busy is user, nice, system, irq and softirq time; Steal
// is time the hypervisor ran something else while this machine had work
// (a virtual machine's noisy neighbours); Total is all of it, idle included.
type HostCPU struct{ Busy, Steal, Total float64 }

// ReadHostCPU reads the machine's CPU times.
func ReadHostCPU() (HostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal guest guest_nice:
	// guest time is counted in user already.
	if len(f) < 9 || f[0] != "cpu" {
		return HostCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
			return HostCPU{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
	}
	var c HostCPU
	for _, x := range v {
		c.Total += x
	}
	c.Busy = v[0] + v[1] + v[2] + v[5] + v[6]
	c.Steal = v[7]
	return c, nil
}

// Shares are the busy and stolen percentages of the time between c and a
// later reading.
func (c HostCPU) Shares(later HostCPU) (busy, steal float64) {
	total := later.Total - c.Total
	if total <= 0 {
		return 0, 0
	}
	return 100 * (later.Busy - c.Busy) / total, 100 * (later.Steal - c.Steal) / total
}
