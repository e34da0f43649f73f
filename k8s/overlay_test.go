package k8s_test

import (
	"net"
	"strings"
	"testing"

	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// build runs kustomize (as a library, offline) on dir and decodes what it
// produces strictly, as load does for the files.
func build(t *testing.T, dir string) *objects {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	o := newObjects()
	decodeDocs(t, dir, out, o)
	return o
}

func TestTheBaseBuildsWithKustomize(t *testing.T) {
	o := build(t, ".")
	if o.statefulsets["redis"] == nil || o.deployments["herald"] == nil {
		t.Fatal("the base lost its Redis or herald")
	}
}

func TestTheRedisSentinelOverlayGivesHeraldOneWayToAnHARedis(t *testing.T) {
	o := build(t, "overlays/redis-sentinel")
	if o.statefulsets["redis"] != nil || o.services["redis"] != nil {
		t.Error("the single Redis of the base is still there")
	}
	ha := o.statefulsets["redis-ha"]
	if ha == nil || *ha.Spec.Replicas != 3 || len(ha.Spec.Template.Spec.Containers) != 2 {
		t.Fatal("redis-ha is not three pods of Redis and Sentinel")
	}
	if svc := o.services["redis-ha"]; svc == nil || !svc.Spec.PublishNotReadyAddresses || svc.Spec.ClusterIP != "None" {
		t.Error("redis-ha needs a headless service that publishes pods before they are ready")
	}

	cfg := o.configmaps["herald-config"].Data
	secret := o.secrets["herald-secrets"].StringData
	if _, ok := secret["HERALD_REDIS_URL"]; ok {
		t.Error("the overlay keeps HERALD_REDIS_URL beside the sentinels: herald refuses two ways to Redis")
	}
	if secret["HERALD_REDIS_PASSWORD"] == "" {
		t.Error("herald has no password for the sentinel-managed Redis")
	}
	if cfg["HERALD_REDIS_MASTER_NAME"] != "herald" || cfg["HERALD_REDIS_MIN_REPLICAS"] != "1" {
		t.Errorf("master name %q, min replicas %q", cfg["HERALD_REDIS_MASTER_NAME"], cfg["HERALD_REDIS_MIN_REPLICAS"])
	}
	scripts := o.configmaps["redis-ha-scripts"].Data
	if !strings.Contains(scripts["sentinel.sh"], "sentinel monitor "+cfg["HERALD_REDIS_MASTER_NAME"]+" ") {
		t.Error("the sentinels monitor another master name than herald asks for")
	}
	addrs := strings.Split(cfg["HERALD_REDIS_SENTINEL_ADDRS"], ",")
	if len(addrs) != int(*ha.Spec.Replicas) {
		t.Errorf("herald knows %d sentinels, the set runs %d", len(addrs), *ha.Spec.Replicas)
	}
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || port != "26379" || !strings.HasPrefix(host, "redis-ha-") || !strings.HasSuffix(host, "."+ha.Spec.ServiceName) {
			t.Errorf("sentinel address %d %q is not a pod of %s on 26379", i, a, ha.Spec.ServiceName)
		}
	}

	// Every HERALD_* the overlay sets is a flag of the binary.
	known := flags(t, herald(t))
	for name := range cfg {
		if flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "HERALD_")), "_", "-"); strings.HasPrefix(name, "HERALD_") && !known[flag] {
			t.Errorf("configmap sets %s, but herald has no --%s", name, flag)
		}
	}

	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	tmpl := ha.Spec.Template
	if r := policy.AggregateCheckResults(evaluator.EvaluatePod(level, &tmpl.ObjectMeta, &tmpl.Spec)); !r.Allowed {
		t.Errorf("redis-ha violates restricted: %s", r.ForbiddenDetail())
	}
	for _, c := range tmpl.Spec.Containers {
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("redis-ha container %s: root filesystem not read-only", c.Name)
		}
	}

	// herald may reach the sentinels, and Redis pods each other.
	egress := o.netpols["herald"].Spec.Egress[0].Ports
	ingress := o.netpols["redis"].Spec.Ingress[0]
	if len(egress) != 2 || egress[1].Port.IntValue() != 26379 || len(ingress.From) != 2 {
		t.Error("network policies do not open the sentinel port or Redis-to-Redis traffic")
	}
}
