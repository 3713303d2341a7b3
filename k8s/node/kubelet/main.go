// Command kubelet builds the upstream Kubernetes kubelet at the release k8s/node/go.mod pins,
// for the single-node cluster of scripts/cluster and tests/cluster. It adds nothing of its own:
// the registrations below are the upstream binary's (log format, client and version metrics).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
