// Command sealmesh-cni is the chained CNI plugin; see package cni.
package main

import "github.com/sealmesh/sealmesh/cni"

var version = "dev"

func main() { cni.Main(version) }
