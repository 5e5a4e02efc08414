// Package state holds the fuzz targets that need the store and the
// coordinator (the history a store serves, the API's request bodies). They
// are apart from package fuzz because the store links client-go and etcd,
// whose coverage counters slow every target in the same binary.
package state
