// Package k8s_test checks the Kubernetes manifests offline: they decode
// strictly into the API types, their pods pass the "restricted" Pod Security
// Standard, and what they tell herald (flags, ports, probe paths, metrics)
// is what the binary really accepts and serves.
package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml herald uses; strict
// decoding rejects anything else.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			Labels                map[string]string `json:"labels"`
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
}

// objects holds every decoded manifest by kind and name.
type objects struct {
	deployments  map[string]*appsv1.Deployment
	statefulsets map[string]*appsv1.StatefulSet
	configmaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	netpols      map[string]*networkingv1.NetworkPolicy
	monitors     map[string]*monitoringv1.ServiceMonitor
	rules        map[string]*monitoringv1.PrometheusRule
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
}

func newObjects() *objects {
	return &objects{
		deployments: map[string]*appsv1.Deployment{}, statefulsets: map[string]*appsv1.StatefulSet{},
		configmaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		monitors: map[string]*monitoringv1.ServiceMonitor{}, rules: map[string]*monitoringv1.PrometheusRule{},
	}
}

func newObject(kind string, o *objects) (any, func(name string, v any)) {
	switch kind {
	case "Namespace":
		return &corev1.Namespace{}, func(string, any) {}
	case "ConfigMap":
		return &corev1.ConfigMap{}, func(n string, v any) { o.configmaps[n] = v.(*corev1.ConfigMap) }
	case "Secret":
		return &corev1.Secret{}, func(n string, v any) { o.secrets[n] = v.(*corev1.Secret) }
	case "Service":
		return &corev1.Service{}, func(n string, v any) { o.services[n] = v.(*corev1.Service) }
	case "Deployment":
		return &appsv1.Deployment{}, func(n string, v any) { o.deployments[n] = v.(*appsv1.Deployment) }
	case "StatefulSet":
		return &appsv1.StatefulSet{}, func(n string, v any) { o.statefulsets[n] = v.(*appsv1.StatefulSet) }
	case "Ingress":
		return &networkingv1.Ingress{}, func(string, any) {}
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, func(n string, v any) { o.netpols[n] = v.(*networkingv1.NetworkPolicy) }
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, func(string, any) {}
	case "HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, func(_ string, v any) { o.hpas = append(o.hpas, v.(*autoscalingv2.HorizontalPodAutoscaler)) }
	case "ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, func(n string, v any) { o.monitors[n] = v.(*monitoringv1.ServiceMonitor) }
	case "PrometheusRule":
		return &monitoringv1.PrometheusRule{}, func(n string, v any) { o.rules[n] = v.(*monitoringv1.PrometheusRule) }
	}
	return nil, nil
}

// load decodes kustomization.yaml, every resource it lists and the example
// variants, strictly.
func load(t *testing.T) (kustomization, *objects) {
	t.Helper()
	var k kustomization
	raw, err := os.ReadFile("base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	o := newObjects()
	files := append(append([]string{}, k.Resources...), "hpa-connections.example.yaml")
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join("base", f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		decodeDocs(t, f, raw, o)
	}
	return k, o
}

// decodeDocs decodes every YAML document of raw (from source) strictly into
// its API type and keeps it in o.
func decodeDocs(t *testing.T, source string, raw []byte, o *objects) {
	t.Helper()
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s doc %d: %v", source, i, err)
		}
		obj, keep := newObject(meta.Kind, o)
		if obj == nil {
			t.Fatalf("%s doc %d: kind %q is not checked by this test", source, i, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s doc %d (%s): %v", source, i, meta.Kind, err)
		}
		var om struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		yaml.Unmarshal([]byte(doc), &om)
		keep(om.Metadata.Name, obj)
	}
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	k, o := load(t)
	if k.Namespace != "herald" || len(k.Resources) == 0 {
		t.Fatalf("kustomization: %+v", k)
	}
	if o.deployments["herald"] == nil || o.statefulsets["redis"] == nil || o.configmaps["herald-config"] == nil ||
		o.secrets["herald-secrets"] == nil || o.services["herald"] == nil || len(o.hpas) != 2 ||
		o.monitors["herald"] == nil || o.rules["herald"] == nil || o.netpols["herald"] == nil || o.netpols["redis"] == nil {
		t.Fatal("a manifest is missing")
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			raw, err := os.ReadFile(filepath.Join("base", f))
			if err != nil || !json.Valid(raw) {
				t.Fatalf("generated config map file %s: unreadable or not JSON (%v)", f, err)
			}
		}
	}
}

func TestDuplicateAndUnknownFieldsAreCaught(t *testing.T) {
	// The checker itself must fail on the mistakes it exists to catch.
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {sessionAfinity: None}\n",
		"duplicate field": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n",
	} {
		if err := yaml.UnmarshalStrict([]byte(doc), &corev1.Service{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPodsPassTheRestrictedPodSecurityStandard(t *testing.T) {
	_, o := load(t)
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	templates := map[string]*corev1.PodTemplateSpec{}
	for n, d := range o.deployments {
		templates["deployment/"+n] = &d.Spec.Template
	}
	for n, s := range o.statefulsets {
		templates["statefulset/"+n] = &s.Spec.Template
	}
	for name, tmpl := range templates {
		result := policy.AggregateCheckResults(evaluator.EvaluatePod(level, &tmpl.ObjectMeta, &tmpl.Spec))
		if !result.Allowed {
			t.Errorf("%s violates restricted: %s", name, result.ForbiddenDetail())
		}
		for _, c := range tmpl.Spec.Containers {
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s container %s: root filesystem not read-only", name, c.Name)
			}
		}
	}
	// The check must be able to fail: a privileged container is refused.
	bad := o.deployments["herald"].Spec.Template.DeepCopy()
	yes := true
	bad.Spec.Containers[0].SecurityContext.Privileged = &yes
	if policy.AggregateCheckResults(evaluator.EvaluatePod(level, &bad.ObjectMeta, &bad.Spec)).Allowed {
		t.Fatal("a privileged pod passed the restricted check")
	}
}

// herald builds the node binary from the repository.
func herald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/server")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	return bin
}

// flags returns the flag names the binary accepts, from its -help.
func flags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "-help").CombinedOutput()
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 10 {
		t.Fatalf("could not read flags from -help:\n%s", out)
	}
	return names
}

// envOnly are the variables herald reads that have no flag: secrets, which
// must never be passed on a command line.
var envOnly = map[string]bool{"HERALD_API_KEYS": true, "HERALD_TOKEN_SECRET": true,
	"HERALD_REDIS_PASSWORD": true, "HERALD_REDIS_SENTINEL_PASSWORD": true}

func TestManifestsAgreeWithWhatTheBinaryAccepts(t *testing.T) {
	_, o := load(t)
	bin := herald(t)
	known := flags(t, bin)
	checkEnv := func(where, name string) {
		if !strings.HasPrefix(name, "HERALD_") || envOnly[name] {
			return
		}
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "HERALD_")), "_", "-")
		if !known[flag] {
			t.Errorf("%s sets %s, but herald has no --%s", where, name, flag)
		}
	}
	cfg := o.configmaps["herald-config"]
	for name := range cfg.Data {
		checkEnv("configmap herald-config", name)
	}
	for name := range o.secrets["herald-secrets"].StringData {
		checkEnv("secret herald-secrets", name)
	}
	d := o.deployments["herald"]
	c := d.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		checkEnv("deployment herald", e.Name)
	}

	// Ports: the listen address, the container port, the Service and the
	// NetworkPolicy name the same one.
	_, port, err := net.SplitHostPort(cfg.Data["HERALD_LISTEN"])
	if err != nil {
		t.Fatalf("HERALD_LISTEN: %v", err)
	}
	if fmt.Sprint(c.Ports[0].ContainerPort) != port || c.Ports[0].Name != "http" {
		t.Errorf("container port %v (%s), listen port %s", c.Ports[0].ContainerPort, c.Ports[0].Name, port)
	}
	if tp := o.services["herald"].Spec.Ports[0].TargetPort.String(); tp != c.Ports[0].Name {
		t.Errorf("service targets %s, container port is %s", tp, c.Ports[0].Name)
	}
	if np := o.netpols["herald"].Spec.Ingress[0].Ports[0].Port.String(); np != port {
		t.Errorf("network policy admits %s, herald listens on %s", np, port)
	}
	if !strings.HasSuffix(envValue(c, "HERALD_ADVERTISE_ADDR"), ":"+port) {
		t.Errorf("advertised address %q does not end in the listen port", envValue(c, "HERALD_ADVERTISE_ADDR"))
	}

	// Grace period: longer than the preStop pause plus the drain window.
	drain, err := time.ParseDuration(cfg.Data["HERALD_DRAIN_WINDOW"])
	if err != nil {
		t.Fatal(err)
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= pause+drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v is not above preStop %v + drain %v + 5s margin", grace, pause, drain)
	}

	// Probe and metrics paths exist, and every metric the alerts and the
	// dashboard use is one herald exports.
	addr := runHerald(t, bin)
	for _, p := range []string{c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path} {
		if status := get(t, "http://"+addr+p); status == http.StatusNotFound {
			t.Errorf("probe path %s: 404", p)
		}
	}
	metricsPath := o.monitors["herald"].Spec.Endpoints[0].Path
	exported := metricNames(t, "http://"+addr+metricsPath)
	var exprs []string
	for _, g := range o.rules["herald"].Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr.String())
		}
	}
	dash, _ := os.ReadFile("base/grafana/herald-dashboard.json")
	exprs = append(exprs, string(dash))
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`herald_[a-z_]+`).FindAllString(e, -1) {
			base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
			if !exported[m] && !exported[base] {
				t.Errorf("%s is used by an alert or the dashboard but herald does not export it", m)
			}
		}
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// runHerald starts the binary in single-node mode on a free port.
func runHerald(t *testing.T, bin string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--listen", addr, "--node-id", "manifest-check")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 200 {
		if get(t, "http://"+addr+"/healthz") == http.StatusOK {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("herald did not start")
	return ""
}

func get(t *testing.T, url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func metricNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 3 && f[0] == "#" && f[1] == "HELP" {
			names[f[2]] = true
		}
	}
	return names
}
