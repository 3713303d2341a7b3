// Command kube-apiserver builds the upstream Kubernetes API server from the
// module proxy so Peregrine's k8s tests run against the real thing, not a
// stand-in. It adds nothing of its own: the version is pinned in go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
