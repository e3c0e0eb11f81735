// Command noopcni is the floor of a CNI call for `make bench-cni`: a Go
// plugin that does no work. ADD prints a fixed one-interface result, DEL
// and the rest print nothing, VERSION lists the versions. Timed through
// libcni beside telcni and the reference chain, it is what any one-call-per-
// interface Go plugin pays before doing anything (process start-up and
// libcni's own work), so the bench can show which ratios are reachable.
package main

import (
	"io"
	"os"
)

func main() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	switch os.Getenv("CNI_COMMAND") {
	case "ADD":
		_, _ = os.Stdout.WriteString(`{"cniVersion":"1.1.0","interfaces":[{"name":"` + os.Getenv("CNI_IFNAME") + `","sandbox":"` + os.Getenv("CNI_NETNS") +
			`"}],"ips":[{"address":"10.99.0.2/16","interface":0}]}`)
	case "VERSION":
		_, _ = os.Stdout.WriteString(`{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`)
	}
}
