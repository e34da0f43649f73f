package k8s_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTheImageIsStaticNonRootAndExposesTheNodePort reads the Dockerfile:
// there is no registry here to build it, so its promises are checked as text.
func TestTheImageIsStaticNonRootAndExposesTheNodePort(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatal("not a multi-stage build")
	}
	final := froms[len(froms)-1][1]
	if !strings.Contains(final, "distroless/static") && final != "scratch" {
		t.Errorf("final stage %s is neither distroless static nor scratch", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "org.opencontainers.image.source"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\d+)`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" {
		t.Errorf("final stage does not run as a numeric non-root user: %v", user)
	}
	_, o := load(t)
	port := o.deployments["herald"].Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
	exposes := regexp.MustCompile(`(?m)^EXPOSE\s+(\d+)\s*$`).FindAllStringSubmatch(df, -1)
	if len(exposes) != 1 || exposes[0][1] != itoa(port) {
		t.Errorf("EXPOSE %v, want only the container port %d", exposes, port)
	}
	if runAs := o.deployments["herald"].Spec.Template.Spec.SecurityContext.RunAsUser; runAs == nil || itoa(int32(*runAs)) != user[1] {
		t.Errorf("deployment runs as %v, image as %s", runAs, user[1])
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
