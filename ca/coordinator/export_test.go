package coordinator

// SetMaxStatusHosts lowers the status's host list bound for a test.
func SetMaxStatusHosts(n int) func() {
	old := maxStatusHosts
	maxStatusHosts = n
	return func() { maxStatusHosts = old }
}

// MaxNonces is the bound on outstanding nonces.
const MaxNonces = maxNonces
