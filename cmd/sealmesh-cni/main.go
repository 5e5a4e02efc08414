// Command sealmesh-cni is the chained CNI plugin; see package cni.
package main

import "github.com/sealmesh/sealmesh/cni"

func main() { cni.Main() }
