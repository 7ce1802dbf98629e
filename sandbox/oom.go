package sandbox

// ClampOOMScoreAdj returns v raised to floor (the lowest value this host
// lets the shim set) and capped at 1000. CRI asks -998 for sandboxes; a
// host that refuses negative values would make the runtime fail, and in a
// VM the value applies to the guest anyway.
func ClampOOMScoreAdj(v, floor int) int {
	return min(max(v, floor, -1000), 1000)
}
