package docs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/test/tools"
)

var (
	usageRE  = regexp.MustCompile(`(?m)^Usage:\n  (.*)$`)
	flagRE   = regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w-]+) (\w+)\s`) // a flag with a value's type
	inlineRE = regexp.MustCompile("`((?:meshctl|sealmesh-[a-z]+)(?: [^`]*)?)`")
	assignRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`) // VAR=value before a command
)

// binaries are the commands the documents may name.
var binaries = []string{"meshctl", "sealmesh-coordinator", "sealmesh-agent", "sealmesh-lighthouse", "sealmesh-tunnel"}

// docCommand is one command line a document shows.
type docCommand struct {
	where string   // file:line
	words []string // the binary's base name, then its arguments
}

// TestDocumentedCommandsExist runs every sealmesh command line in README.md's
// and docs/*.md's code blocks, the systemd units' ExecStart lines, the
// chart's NOTES.txt and the containers of the rendered chart with --help,
// built from this tree: a command, subcommand or flag that does not exist
// (or a spelling that is only a deprecated alias) fails. Issue 28 found
// `meshctl manifest show` and `meshctl lighthouse token` in the docs.
func TestDocumentedCommandsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries; make test runs it")
	}
	bin := t.TempDir()
	// As make build builds them: -X main.version must reach every binary
	// (it did nothing for two before issue 28).
	args := []string{"build", "-ldflags", "-X main.version=v0.0.0-doctest", "-o", bin + "/"}
	for _, b := range append(binaries, "sealmesh-cni") {
		args = append(args, "github.com/sealmesh/sealmesh/cmd/"+b)
	}
	build := exec.Command("go", args...)
	build.Dir = tools.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, b := range append(binaries, "sealmesh-cni") {
		out, err := exec.Command(filepath.Join(bin, b), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), b+" version v0.0.0-doctest\n") {
			t.Errorf("%s --version: %v\n%s", b, err, out)
		}
	}

	var cmds []docCommand
	mds, _ := filepath.Glob(filepath.Join(tools.Root(), "docs", "*.md"))
	for _, f := range append([]string{filepath.Join(tools.Root(), "README.md"), filepath.Join(tools.Root(), "SECURITY.md")}, mds...) {
		cmds = append(cmds, codeBlockCommands(t, f)...)
		cmds = append(cmds, inlineCommands(t, f)...)
	}
	cmds = append(cmds, inlineCommands(t, filepath.Join(tools.Root(), "deploy", "helm", "sealmesh", "values.yaml"))...)
	units, _ := filepath.Glob(filepath.Join(tools.Root(), "deploy", "systemd", "*.service"))
	for _, f := range units {
		cmds = append(cmds, prefixedCommands(t, f, "ExecStart=")...)
	}
	cmds = append(cmds, prefixedCommands(t, filepath.Join(tools.Root(), "deploy", "helm", "sealmesh", "templates", "NOTES.txt"), "")...)
	cmds = append(cmds, chartCommands(t, filepath.Join(tools.Root(), "deploy", "manifests", "sealmesh.yaml"))...)

	seen := map[string]int{}
	for _, c := range cmds {
		seen[c.words[0]]++
		t.Run(c.where, func(t *testing.T) {
			if _, err := checkCommand(bin, c.words); err != nil {
				t.Errorf("%s: %s: %v", c.where, strings.Join(c.words, " "), err)
			}
		})
	}
	// The extraction itself must find the commands it is meant to check.
	for _, b := range []string{"meshctl", "sealmesh-agent", "sealmesh-coordinator", "sealmesh-lighthouse"} {
		if seen[b] == 0 {
			t.Errorf("found no %s command line in the documents: the extraction is broken", b)
		}
	}
	t.Logf("checked %d command lines: %v", len(cmds), seen)
}

// checkCommand runs words with --help and checks the answer: cobra finds
// the subcommand and parses every flag even with --help, so an unknown flag
// fails; what it does not check (a word naming no subcommand, given to a
// command that takes no arguments) is checked here from the usage line.
func checkCommand(bin string, words []string) (help string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// --help=true first: a trailing flag the document leaves without a
	// value cannot swallow it, and cobra's search for the subcommand does
	// not take it for a flag with a value (as it would --help).
	cmd := exec.CommandContext(ctx, filepath.Join(bin, words[0]), append([]string{"--help=true"}, words[1:]...)...)
	cmd.Dir = bin
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + bin, "SEALMESH_COORDINATOR=http://127.0.0.1:1"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// Prose names a flag without its value ("give --owner-key"): check
		// the rest.
		if last := words[len(words)-1]; strings.Contains(stderr.String(), "flag needs an argument: --"+strings.TrimLeft(last, "-")) {
			help, err := checkCommand(bin, words[:len(words)-1])
			if err == nil && !valueFlags(help)[last] {
				err = fmt.Errorf("%s is not in the command's --help (a deprecated or hidden flag)", last)
			}
			return help, err
		}
		return "", fmt.Errorf("%v\n%s%s", err, stdout.String(), stderr.String())
	}
	help = stdout.String() + stderr.String()
	if strings.Contains(help, "has been deprecated") {
		return help, fmt.Errorf("uses a deprecated spelling:\n%s", firstLines(help, 2))
	}
	usage := usageRE.FindStringSubmatch(help)
	if usage == nil {
		return help, fmt.Errorf("no usage line in --help:\n%s", help)
	}
	useLine := strings.Fields(strings.TrimSuffix(usage[1], " [flags]"))
	path := 0 // words of the command path (after the binary)
	for path+1 < len(useLine) && !placeholder(useLine[path+1]) {
		path++
	}
	// An argument placeholder, not a flag's (enrol --token-file FILE ...).
	takesArgs := path+1 < len(useLine) && !strings.HasPrefix(useLine[path+1], "-")
	positional := positionals(words[1:], valueFlags(help))
	if len(positional) < path || strings.Join(positional[:path], " ") != strings.Join(useLine[1:path+1], " ") {
		return help, fmt.Errorf("found %q for %q", usage[1], strings.Join(positional, " "))
	}
	if extra := positional[path:]; len(extra) > 0 && !takesArgs {
		return help, fmt.Errorf("%q takes no argument and has no subcommand %q", strings.Join(useLine, " "), extra[0])
	}
	return help, nil
}

// placeholder: an argument or flag in a usage line (MANIFEST, POD|NAME,
// [ID], --dir DIR): the command path ends before it.
func placeholder(w string) bool {
	return w == strings.ToUpper(w) || strings.ContainsAny(w, "[]|<>") || strings.HasPrefix(w, "-")
}

// valueFlags are the flags in a --help text that take a value (those with a
// type after their name).
func valueFlags(help string) map[string]bool {
	out := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
		out["--"+m[2]] = true
		if m[1] != "" {
			out["-"+m[1]] = true
		}
	}
	return out
}

// positionals are the words that are not flags or flag values.
func positionals(words []string, takesValue map[string]bool) []string {
	var out []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "--":
			return append(out, words[i+1:]...)
		case strings.HasPrefix(w, "-") && len(w) > 1:
			if !strings.Contains(w, "=") && takesValue[w] {
				i++
			}
		default:
			out = append(out, w)
		}
	}
	return out
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	return strings.Join(l[:min(n, len(l))], "\n")
}

// codeBlockCommands are the sealmesh command lines in f's fenced code blocks.
func codeBlockCommands(t *testing.T, f string) []docCommand {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	in := false
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			continue
		}
		if !in {
			continue
		}
		start := i
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) { // continuation lines
			i++
			l = strings.TrimSuffix(l, "\\") + " " + lines[i]
		}
		out = append(out, commandsIn(fmt.Sprintf("%s:%d", rel(f), start+1), l)...)
	}
	return out
}

// inlineCommands are the sealmesh commands f names in `inline code`
// (outside fenced blocks too: tables and prose).
func inlineCommands(t *testing.T, f string) []docCommand {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	for i, l := range strings.Split(string(b), "\n") {
		for _, m := range inlineRE.FindAllStringSubmatch(l, -1) {
			out = append(out, commandsIn(fmt.Sprintf("%s:%d", rel(f), i+1), m[1])...)
		}
	}
	return out
}

// prefixedCommands are the command lines of f's lines that start with
// prefix (after indentation).
func prefixedCommands(t *testing.T, f, prefix string) []docCommand {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			out = append(out, commandsIn(fmt.Sprintf("%s:%d", rel(f), i+1), rest)...)
		}
	}
	return out
}

// chartCommands are the containers of the rendered chart that run a
// sealmesh binary: command and args as the kubelet would run them.
func chartCommands(t *testing.T, f string) []docCommand {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	for i, doc := range strings.Split(string(b), "\n---") {
		var obj struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []container `json:"initContainers"`
						Containers     []container `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s document %d: %v", rel(f), i, err)
		}
		for _, c := range append(obj.Spec.Template.Spec.InitContainers, obj.Spec.Template.Spec.Containers...) {
			if len(c.Command) == 0 || !isBinary(filepath.Base(c.Command[0])) {
				continue
			}
			words := append([]string{filepath.Base(c.Command[0])}, c.Command[1:]...)
			out = append(out, docCommand{where: fmt.Sprintf("%s:%s/%s", rel(f), obj.Kind, c.Name), words: append(words, c.Args...)})
		}
	}
	return out
}

type container struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
}

func isBinary(w string) bool {
	for _, b := range binaries {
		if w == b {
			return true
		}
	}
	return false
}

// commandsIn splits a shell line into simple commands and keeps those that
// run a sealmesh binary (after any VAR=value and sudo).
func commandsIn(where, line string) []docCommand {
	var out []docCommand
	var cur []string
	flush := func() {
		for len(cur) > 0 && (cur[0] == "sudo" || cur[0] == "exec" || assignRE.MatchString(cur[0])) {
			cur = cur[1:]
		}
		if len(cur) > 0 && isBinary(filepath.Base(cur[0])) {
			words := append([]string{filepath.Base(cur[0])}, cur[1:]...)
			out = append(out, docCommand{where: where, words: words})
		}
		cur = nil
	}
	for _, w := range shellWords(line) {
		switch {
		case w == "|" || w == "||" || w == "&&" || w == ";" || w == "&":
			flush()
		case strings.HasPrefix(w, "#"):
			flush()
			return out
		case strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || strings.HasPrefix(w, "<") && !strings.HasSuffix(w, ">"):
			flush() // a redirection ends what is checked
		case w == "…" || w == "...":
		default:
			cur = append(cur, w)
		}
	}
	flush()
	return out
}

// shellWords splits a line as a shell would, closely enough for documents:
// quotes, $(...) and <placeholders with spaces> stay one word (unquoted).
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			end()
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(line[i+1 : i+1+j])
			inWord, i = true, i+1+j
		case c == '$' && i+1 < len(line) && line[i+1] == '(':
			depth, j := 0, i+1
			for ; j < len(line); j++ {
				if line[j] == '(' {
					depth++
				} else if line[j] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			w.WriteString(line[i:min(j+1, len(line))])
			inWord, i = true, j
		case c == '<' && !inWord && strings.IndexByte(line[i:], '>') > 0 && !strings.HasPrefix(line[i:], "<<"):
			j := strings.IndexByte(line[i:], '>')
			w.WriteString(line[i : i+j+1])
			inWord, i = true, i+j
		case c == '|' || c == ';' || c == '&':
			end()
			op := string(c)
			if i+1 < len(line) && (line[i+1] == '|' || line[i+1] == '&') {
				op += string(line[i+1])
				i++
			}
			words = append(words, op)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	end()
	return words
}

func rel(f string) string {
	r, err := filepath.Rel(tools.Root(), f)
	if err != nil {
		return f
	}
	return r
}
