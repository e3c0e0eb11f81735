// Package e2e drives the real telcni plugin binary the way container
// runtimes do — CNI_* environment and stdin config, or libcni with a
// conflist chain — against an agent served on a real unix socket, with
// pods as real network namespaces.
package e2e
