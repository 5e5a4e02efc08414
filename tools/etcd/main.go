// Command etcd is etcd's own server, built from its Go module for the store
// tests and the Kubernetes harness (go install refuses etcd's module because of
// its replace directives; this small module builds it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
