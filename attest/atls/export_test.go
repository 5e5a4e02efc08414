package atls

// PoolPerHost is how many connections a Pool keeps to one server.
const PoolPerHost = poolPerHost
