// Command kube-controller-manager builds the upstream Kubernetes kube-controller-manager at the release k8s/node/go.mod pins,
// for the single-node cluster of scripts/cluster and tests/cluster. It adds nothing of its own:
// the registrations below are the upstream binary's (log format, client and version metrics).
package main

import (
	"os"
	_ "time/tzdata" // CronJobs name time zones; the binary is static and the image may lack them

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
