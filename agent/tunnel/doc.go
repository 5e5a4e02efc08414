// Package tunnel runs Nebula as a library: it makes Nebula's configuration from
// an enrolment (Nebula, entirely in memory) and runs instances of it in a
// tunnel host (sealmesh-tunnel, or the lighthouse's own process), driven over
// a control socket. Each pod's instance is created on a thread inside the
// pod's network namespace, so its TUN device and UDP sockets are there; what
// Nebula would otherwise do by namespace is taken away from it or run back
// inside the pod's. See docs/architecture.md, "Several pods' Nebula in one
// tunnel process".
package tunnel
