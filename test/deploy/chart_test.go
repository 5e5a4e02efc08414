// Package deploy tests the Helm chart and the manifests rendered from it: in
// sync, lint-clean, least privilege as documented, and accepted by a real
// kube-apiserver (kubectl apply --dry-run=server).
package deploy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/test/tools"
)

var (
	chart     = filepath.Join(tools.Root(), "deploy", "helm", "sealmesh")
	manifests = filepath.Join(tools.Root(), "deploy", "manifests")
)

// helm runs the pinned helm CLI.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tools.Bin(t, "helm"), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

// render is the chart rendered as make manifests does, with extra values.
func render(t *testing.T, set ...string) string {
	t.Helper()
	args := []string{"template", "sealmesh", chart, "--namespace", "sealmesh", "-f", filepath.Join(manifests, "values.yaml")}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objects splits rendered YAML into objects, by kind/name.
func objects(t *testing.T, rendered string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(rendered), 4096)
	for {
		var o map[string]any
		if err := dec.Decode(&o); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if o == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: o}
		out[u.GetKind()+"/"+u.GetName()] = u
	}
	return out
}

func TestManifestsInSync(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(manifests, "sealmesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := render(t); got != string(want) {
		t.Fatal("deploy/manifests/sealmesh.yaml is not the chart rendered: run make manifests")
	}
}

func TestChartLint(t *testing.T) {
	for _, set := range [][]string{nil, {"tee=simulated", "agent.tee=simulated", "simulatedTEE.secret=sim", "lighthouse.enabled=true", "lighthouse.tokenSecret=lh", "coordinator.persistence.enabled=true", "metrics.podMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "metrics.dashboard.enabled=true"}} {
		args := []string{"lint", "--strict", chart, "-f", filepath.Join(manifests, "values.yaml")}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// What the chart must refuse to render, and why.
func TestChartRequires(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no coordinator policy", []string{"template", "x", chart}, "coordinator.policy is required"},
		{"simulated TEE without its files", []string{"template", "x", chart, "-f", filepath.Join(manifests, "values.yaml"), "--set", "tee=simulated"}, "simulatedTEE.secret"},
		{"lighthouse without a token", []string{"template", "x", chart, "-f", filepath.Join(manifests, "values.yaml"), "--set", "lighthouse.enabled=true"}, "lighthouse.tokenSecret is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := helm(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

// The permissions and pod security the chart documents.
func TestChartLeastPrivilege(t *testing.T) {
	objs := objects(t, render(t, "tee=simulated", "agent.tee=simulated", "simulatedTEE.secret=sim", "lighthouse.enabled=true", "lighthouse.tokenSecret=lh"))
	rules := func(key string) string {
		o, ok := objs[key]
		if !ok {
			t.Fatalf("%s not rendered", key)
		}
		r, _, _ := unstructured.NestedSlice(o.Object, "rules")
		return fmt.Sprint(r)
	}
	for key, want := range map[string]string{
		"Role/sealmesh-coordinator":  "[map[apiGroups:[] resources:[configmaps] verbs:[get list watch create update delete]]]",
		"ClusterRole/sealmesh-agent": "[map[apiGroups:[] resources:[pods] verbs:[get list]] map[apiGroups:[] resources:[events] verbs:[create]]]",
		"Role/sealmesh-agent":        "[map[apiGroups:[apps] resourceNames:[sealmesh-agent] resources:[daemonsets] verbs:[get watch]]]",
	} {
		if got := rules(key); got != want {
			t.Errorf("%s rules %s, want %s", key, got, want)
		}
	}
	// Deleting pods is granted only with the option that uses it.
	withDelete := objects(t, render(t, "agent.deleteUnattachedPods=true"))["ClusterRole/sealmesh-agent"]
	if r, _, _ := unstructured.NestedSlice(withDelete.Object, "rules"); !strings.Contains(fmt.Sprint(r), "verbs:[get list delete]") {
		t.Errorf("agent.deleteUnattachedPods=true: rules %v, want delete on pods", r)
	}
	if _, ok := objs["ClusterRole/sealmesh-coordinator"]; ok {
		t.Error("the coordinators have a ClusterRole")
	}

	container := func(key, name string) map[string]any {
		cs, _, _ := unstructured.NestedSlice(objs[key].Object, "spec", "template", "spec", "containers")
		for _, c := range cs {
			if c.(map[string]any)["name"] == name {
				return c.(map[string]any)
			}
		}
		t.Fatalf("%s has no container %s", key, name)
		return nil
	}
	// Pod Security "restricted" for the coordinator (with a TEE that needs no
	// device), and the capabilities the others need, no more.
	coord := container("StatefulSet/sealmesh-coordinator", "coordinator")["securityContext"].(map[string]any)
	if coord["runAsNonRoot"] != true || coord["allowPrivilegeEscalation"] != false || fmt.Sprint(coord["capabilities"]) != "map[drop:[ALL]]" || fmt.Sprint(coord["seccompProfile"]) != "map[type:RuntimeDefault]" {
		t.Errorf("coordinator securityContext %v is not restricted", coord)
	}
	lh := container("Deployment/sealmesh-lighthouse", "lighthouse")["securityContext"].(map[string]any)
	if fmt.Sprint(lh["capabilities"]) != "map[add:[NET_ADMIN] drop:[ALL]]" || lh["privileged"] != nil {
		t.Errorf("lighthouse securityContext %v", lh)
	}
	install := container("DaemonSet/sealmesh-agent", "install-cni")
	if sc := install["securityContext"].(map[string]any); sc["privileged"] != nil || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("install-cni securityContext %v", sc)
	}
	if !strings.Contains(fmt.Sprint(install["args"]), "--uninstall-when-gone=sealmesh/sealmesh-agent") {
		t.Errorf("install-cni args %v", install["args"])
	}
	if p, _, _ := unstructured.NestedString(install, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Error("install-cni has no readiness probe: the node would report ready without the plugin")
	}

	sts := objs["StatefulSet/sealmesh-coordinator"]
	if n, _, _ := unstructured.NestedFieldNoCopy(sts.Object, "spec", "replicas"); fmt.Sprint(n) != "3" {
		t.Errorf("coordinator replicas %v, want 3", n)
	}
	if _, ok := objs["PodDisruptionBudget/sealmesh-coordinator"]; !ok {
		t.Error("no PodDisruptionBudget for the coordinators")
	}
	if p, _, _ := unstructured.NestedBool(objs["Service/sealmesh-coordinator-peers"].Object, "spec", "publishNotReadyAddresses"); !p {
		t.Error("the gossip Service hides recovering coordinators")
	}
}

// kubeconfig writes a kubeconfig for cfg.
func kubeconfig(t *testing.T, cfg *rest.Config) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: test, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, cfg.Host, cfg.BearerToken)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every rendered object is accepted by a real kube-apiserver's validation
// and admission (kubectl apply --dry-run=server), for the plain manifests and
// for the chart with its options on.
func TestManifestsServerDryRun(t *testing.T) {
	kubectl := tools.Bin(t, "kubectl")
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "sealmesh")
	kc := kubeconfig(t, cfg)
	withOptions := filepath.Join(t.TempDir(), "options.yaml")
	if err := os.WriteFile(withOptions, []byte(render(t, "tee=simulated", "agent.tee=oidc", "simulatedTEE.secret=sim",
		"lighthouse.enabled=true", "lighthouse.tokenSecret=lh", "coordinator.persistence.enabled=true")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(manifests, "sealmesh.yaml"), withOptions} {
		out, err := exec.Command(kubectl, "--kubeconfig", kc, "apply", "--dry-run=server", "-n", "sealmesh", "-f", f).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", filepath.Base(f), err, out)
		}
		if !strings.Contains(string(out), "daemonset.apps/sealmesh-agent created (server dry run)") {
			t.Fatalf("kubectl apply --dry-run=server -f %s:\n%s", filepath.Base(f), out)
		}
	}
}

// TestChartPinsTheMesh: with meshID set, the coordinators, the agents and
// the lighthouse each get --mesh-id; without it, none does.
func TestChartPinsTheMesh(t *testing.T) {
	id := strings.Repeat("ab", 32)
	lh := []string{"lighthouse.enabled=true", "lighthouse.tokenSecret=lh"}
	for _, pinned := range []bool{true, false} {
		set := lh
		if pinned {
			set = append([]string{"meshID=" + id}, lh...)
		}
		rendered := render(t, set...)
		for _, key := range []string{"StatefulSet/sealmesh-coordinator", "DaemonSet/sealmesh-agent", "Deployment/sealmesh-lighthouse"} {
			o, ok := objects(t, rendered)[key]
			if !ok {
				t.Fatalf("%s not rendered", key)
			}
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			found := false
			for _, c := range cs {
				args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
				found = found || slices.Contains(args, "--mesh-id="+id)
			}
			if found != pinned {
				t.Errorf("meshID set %v: %s has --mesh-id %v", pinned, key, found)
			}
		}
	}
}

// lint runs helm lint --strict with the manifests' values and sets.
func lint(t *testing.T, set ...string) (string, error) {
	args := []string{"lint", "--strict", chart, "-f", filepath.Join(manifests, "values.yaml")}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helm(t, args...)
}

// values.schema.json refuses what would otherwise render: misspelt keys,
// values outside their enums, wrong types.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		set, want string
	}{
		{"coordinator.replica=5", "replica"},
		{"tee=snpp", "tee"},
		{"agent.tee=sev", "tee"},
		{"coordinator.replicas=three", "replicas"},
		{"coordinator.replicas=0", "replicas"},
		{"image.digest=latest", "digest"},
		{"image.pullPolicy=Sometimes", "pullPolicy"},
		{"logLevel=loud", "logLevel"},
		{"lighthouse.port=70000", "port"},
		{"agent.extraArgs={verbose}", "extraArgs"},
		{"cni.excludeNamespaces={Kube_System}", "excludeNamespaces"},
		{"meshID=xyz", "meshID"},
	} {
		t.Run(c.set, func(t *testing.T) {
			out, err := lint(t, c.set)
			if err == nil || !strings.Contains(err.Error()+out, c.want) {
				t.Fatalf("helm lint --strict --set %s: %v\n%s\nwant a schema error naming %q", c.set, err, out, c.want)
			}
		})
	}
	if out, err := lint(t, "image.digest=sha256:"+strings.Repeat("ab", 32), "logLevel=debug", "agent.tee=oidc",
		"imagePullSecrets[0].name=regcred", "agent.extraArgs={--pods-per-process=8}"); err != nil {
		t.Fatalf("good values refused: %v\n%s", err, out)
	}
}

// Every value in values.yaml is read by some template: a value that
// changes nothing (lighthouse.port did, once) misleads whoever sets it.
func TestEveryValueUsed(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	var templates strings.Builder
	files, _ := filepath.Glob(filepath.Join(chart, "templates", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		templates.Write(b)
	}
	text := templates.String()
	// A value is read when a template names it, or names a map holding it
	// as a whole (toYaml of resources, say).
	used := func(path []string) bool {
		for i := len(path); i >= 1; i-- {
			re := regexp.MustCompile(`\.Values\.` + regexp.QuoteMeta(strings.Join(path[:i], ".")) + `(?:[^\w.]|$)`)
			if re.MatchString(text) {
				return true
			}
		}
		return false
	}
	var walk func(path []string, v any)
	walk = func(path []string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 && !used(path) {
			for k, child := range m {
				walk(append(slices.Clone(path), k), child)
			}
			return
		}
		if !used(path) {
			t.Errorf("values.yaml: %s is used by no template", strings.Join(path, "."))
		}
	}
	for k, v := range values {
		walk([]string{k}, v)
	}
}

// The options a platform team sets reach the objects they are for.
func TestChartOptions(t *testing.T) {
	digest := "sha256:" + strings.Repeat("cd", 32)
	objs := objects(t, render(t, "image.digest="+digest, "imagePullSecrets[0].name=regcred", "podAnnotations.team=net",
		"logLevel=debug", "lighthouse.enabled=true", "lighthouse.tokenSecret=lh", "lighthouse.port=4343",
		"lighthouse.nodeSelector.sealmesh\\.io/lighthouse=edge", "lighthouse.tolerations[0].operator=Exists",
		"coordinator.extraArgs={--rate-per-source=5}", "coordinator.extraEnv[0].name=GODEBUG", "coordinator.extraEnv[0].value=x509sha1=0",
		"agent.extraArgs={--pods-per-process=8}", "cni.excludeNamespaces={kube-system,monitoring}"))
	spec := func(key string) map[string]any {
		o, ok := objs[key]
		if !ok {
			t.Fatalf("%s not rendered", key)
		}
		s, _, _ := unstructured.NestedMap(o.Object, "spec", "template")
		return s
	}
	str := func(v any) string { return fmt.Sprint(v) }
	for _, key := range []string{"StatefulSet/sealmesh-coordinator", "DaemonSet/sealmesh-agent", "Deployment/sealmesh-lighthouse"} {
		tmpl := spec(key)
		ps, _, _ := unstructured.NestedSlice(tmpl, "spec", "imagePullSecrets")
		ann, _, _ := unstructured.NestedStringMap(tmpl, "metadata", "annotations")
		cs, _, _ := unstructured.NestedSlice(tmpl, "spec", "containers")
		c := cs[len(cs)-1].(map[string]any)
		switch {
		case str(ps) != "[map[name:regcred]]":
			t.Errorf("%s imagePullSecrets %v", key, ps)
		case ann["team"] != "net":
			t.Errorf("%s annotations %v", key, ann)
		case !strings.HasSuffix(str(c["image"]), "@"+digest):
			t.Errorf("%s image %v, want it pinned by digest", key, c["image"])
		case !strings.Contains(str(c["args"]), "--log-level=debug"):
			t.Errorf("%s args %v, want --log-level=debug", key, c["args"])
		}
	}
	coord := spec("StatefulSet/sealmesh-coordinator")
	if pc, _, _ := unstructured.NestedString(coord, "spec", "priorityClassName"); pc != "system-cluster-critical" {
		t.Errorf("coordinator priorityClassName %q", pc)
	}
	tsc, _, _ := unstructured.NestedSlice(coord, "spec", "topologySpreadConstraints")
	if !strings.Contains(str(tsc), "topologyKey:kubernetes.io/hostname") || !strings.Contains(str(tsc), "whenUnsatisfiable:ScheduleAnyway") {
		t.Errorf("coordinator topologySpreadConstraints %v, want a spread over nodes", tsc)
	}
	cs, _, _ := unstructured.NestedSlice(coord, "spec", "containers")
	if c := cs[0].(map[string]any); !strings.Contains(str(c["args"]), "--rate-per-source=5") || !strings.Contains(str(c["env"]), "GODEBUG") {
		t.Errorf("coordinator extraArgs/extraEnv missing: %v %v", c["args"], c["env"])
	}
	lh := spec("Deployment/sealmesh-lighthouse")
	if ns, _, _ := unstructured.NestedStringMap(lh, "spec", "nodeSelector"); ns["sealmesh.io/lighthouse"] != "edge" {
		t.Errorf("lighthouse nodeSelector %v", ns)
	}
	if tol, _, _ := unstructured.NestedSlice(lh, "spec", "tolerations"); len(tol) != 1 {
		t.Errorf("lighthouse tolerations %v", tol)
	}
	lcs, _, _ := unstructured.NestedSlice(lh, "spec", "containers")
	if c := lcs[0].(map[string]any); !strings.Contains(str(c["args"]), "--listen=:4343") || !strings.Contains(str(c["ports"]), "containerPort:4343") {
		t.Errorf("lighthouse.port not wired: args %v ports %v", c["args"], c["ports"])
	}
	// Both the plugin's configuration and the agent exclude the chart's
	// namespaces and the release's own.
	acs, _, _ := unstructured.NestedSlice(spec("DaemonSet/sealmesh-agent"), "spec", "containers")
	for _, c := range acs {
		if args := str(c.(map[string]any)["args"]); !strings.Contains(args, "--exclude-namespaces=kube-system,monitoring,sealmesh") {
			t.Errorf("%s args %s, want --exclude-namespaces=kube-system,monitoring,sealmesh", c.(map[string]any)["name"], args)
		}
	}
}
