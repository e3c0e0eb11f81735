// Package api is telcni's one model: network definitions, the pod's
// attachment requests (the Network Plumbing WG network-selection elements),
// and what telcni reports back (the NPWG network-status with device-info).
//
// Every kernel, SR-IOV and VPP path reads the same Network, so IPAM, routes,
// policy routing and firewall fields mean the same thing everywhere. Parsing
// never stops at the first problem: validation collects every field error,
// each naming its JSON field path and the offending value, because an
// operator fixing a manifest wants the whole list at once.
package api
