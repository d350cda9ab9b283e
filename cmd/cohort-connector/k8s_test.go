package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The Kubernetes manifests are decoded strictly into the k8s.io/api types
// (offline, no cluster): a misspelt or misplaced field fails here, not at
// kubectl apply. Then what a cluster would refuse or get wrong is checked.
func TestKubernetesManifestsAreValidAndDeployable(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "deploy", "k8s", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var deployments []appsv1.Deployment
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		for i, doc := range splitYAML(data) {
			where := fmt.Sprintf("%s document %d", filepath.Base(path), i+1)
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal(doc, &tm), where)
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Secret":
				var s corev1.Secret
				require.NoError(t, yaml.UnmarshalStrict(doc, &s), where)
			case "v1 Service":
				var s corev1.Service
				require.NoError(t, yaml.UnmarshalStrict(doc, &s), where)
			case "apps/v1 Deployment":
				var d appsv1.Deployment
				require.NoError(t, yaml.UnmarshalStrict(doc, &d), where)
				deployments = append(deployments, d)
			default:
				t.Errorf("%s: %s %s has no strict check here: add its type", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	require.NotEmpty(t, deployments)
	for _, d := range deployments {
		pod := d.Spec.Template.Spec
		sc := pod.SecurityContext
		require.NotNil(t, sc, "%s: pod securityContext", d.Name)
		require.NotNil(t, sc.RunAsNonRoot)
		assert.True(t, *sc.RunAsNonRoot, "%s: runAsNonRoot", d.Name)
		require.NotNil(t, sc.RunAsUser, "%s: a numeric runAsUser, which runAsNonRoot can verify", d.Name)
		assert.NotZero(t, *sc.RunAsUser)
		assert.Equal(t, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels, "%s: the selector selects the pods", d.Name)
		for _, c := range pod.Containers {
			image := c.Image
			local := !strings.Contains(strings.SplitN(image, "/", 2)[0], ".")
			assert.NotRegexp(t, `:latest$|^[^:]+$`, image, "%s: a pinned tag, not latest", c.Name)
			if local {
				assert.Contains(t, []corev1.PullPolicy{corev1.PullIfNotPresent, corev1.PullNever}, c.ImagePullPolicy,
					"%s: a local image must not be pulled", c.Name)
			}
			require.NotNil(t, c.ReadinessProbe, c.Name)
			require.NotNil(t, c.LivenessProbe, c.Name)
			assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
			for _, e := range c.Env {
				assert.True(t, strings.HasPrefix(e.Name, "CONNECTOR_"), "%s: %s", c.Name, e.Name)
			}
		}
	}
}

// The image runs as a numeric non-root user (what runAsNonRoot can check),
// from base images named with their registry.
func TestDockerfileRunsAsANumericUserFromQualifiedImages(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	require.NoError(t, err)
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllSubmatch(data, -1)
	require.NotEmpty(t, from)
	for _, m := range from {
		image := string(m[1])
		registry := strings.SplitN(image, "/", 2)[0]
		assert.Contains(t, registry, ".", "FROM %s: name the registry", image)
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllSubmatch(data, -1)
	require.Len(t, user, 1)
	assert.Regexp(t, `^[1-9][0-9]*(:[0-9]+)?$`, string(user[0][1]), "numeric and not root")
}

// splitYAML splits a multi-document YAML file on its "---" lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if b := bytes.TrimSpace([]byte(doc)); len(b) > 0 && !onlyComments(b) {
			docs = append(docs, b)
		}
	}
	return docs
}

func onlyComments(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
