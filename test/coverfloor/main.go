// Command coverfloor fails when the statements of the named files are
// covered less than -min percent in a Go coverage profile: make unit holds
// the agent's pod lifecycle to what its tests without root must reach.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

func main() {
	profile := flag.String("profile", "", "coverage profile (go test -coverprofile)")
	floor := flag.Float64("min", 60, "lowest acceptable percentage")
	flag.Parse()
	if err := run(*profile, *floor, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "coverfloor:", err)
		os.Exit(1)
	}
}

// run reads the profile and checks the files (paths relative to the module,
// as go list names them under the module path).
func run(profile string, floor float64, files []string) error {
	if len(files) == 0 {
		return fmt.Errorf("name the files to hold to the floor")
	}
	f, err := os.Open(profile)
	if err != nil {
		return err
	}
	defer f.Close()
	// A block may be listed once per test binary that covers it: a block
	// counts as covered if any run covered it.
	type block struct{ stmts, hits int }
	blocks := map[string]block{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "mode:") || line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return fmt.Errorf("%s: bad line %q", profile, line)
		}
		file := fields[0][:strings.LastIndexByte(fields[0], ':')]
		if !slices.ContainsFunc(files, func(want string) bool { return strings.HasSuffix(file, "/"+path.Clean(want)) }) {
			continue
		}
		stmts, err1 := strconv.Atoi(fields[1])
		hits, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: bad line %q", profile, line)
		}
		b := blocks[fields[0]]
		b.stmts, b.hits = stmts, max(b.hits, hits)
		blocks[fields[0]] = b
	}
	if err := sc.Err(); err != nil {
		return err
	}
	total, covered := 0, 0
	for _, b := range blocks {
		total += b.stmts
		if b.hits > 0 {
			covered += b.stmts
		}
	}
	if total == 0 {
		return fmt.Errorf("the profile has no statements of %s", strings.Join(files, ", "))
	}
	pct := 100 * float64(covered) / float64(total)
	fmt.Printf("coverage of %s: %.1f%% of %d statements (floor %.0f%%)\n", strings.Join(files, " "), pct, total, floor)
	if pct < floor {
		return fmt.Errorf("%.1f%% is below the floor of %.0f%%", pct, floor)
	}
	return nil
}
