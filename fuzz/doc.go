// Package fuzz holds the fuzz targets of every decoder sealmesh exposes to
// input it does not control: manifests, evidence per platform, the store's
// history objects, sealed state and seed shares, the coordinator's API
// request bodies, the CNI plugin's configuration and the agent's requests.
//
// They live apart from the packages they test so that their test binary
// links no heavy test helpers (servers started for end-to-end tests): the
// fuzzer's coverage map would stall on them. `go test ./fuzz/` runs the
// seed corpora (and testdata/fuzz) as tests; `make fuzz` fuzzes each target
// for a bounded time.
package fuzz
