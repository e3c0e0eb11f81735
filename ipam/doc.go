// Package ipam is telcni's fixed-IP address management.
//
// A requested (static) address is honoured exactly or refused with the
// name of whoever holds it; dynamic allocation draws only from a subnet's
// range and never hands out a held address. Operators keep fixed addresses
// outside the dynamic range, as DANM did with cidr and allocation_pool.
//
// The single-node store is bbolt. Allocations and the agent's attachment
// records live in the same database and are written in the same
// transaction (Store.Update), so a crash at any point leaves neither a
// leaked address nor a duplicate.
package ipam
