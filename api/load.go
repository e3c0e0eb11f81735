package api

import (
	"bytes"
	"encoding/json"
	"strings"

	"sigs.k8s.io/yaml"
)

// ParseNetwork parses one network definition from JSON or YAML. It also
// accepts a NetworkAttachmentDefinition whose spec.config is a telcni
// config; the NAD's metadata name and namespace then name the network.
// The result is validated; every problem comes back in one
// *ValidationError.
func ParseNetwork(data []byte) (*Network, error) {
	var fe fieldErrors
	js, err := toJSON(data)
	if err != nil {
		fe.add("(document)", nil, "is neither JSON nor YAML: %v", err)
		return nil, fe.err()
	}
	var probe struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			Config string `json:"config"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(js, &probe) // only a hint: a non-object fails below with a field error
	if probe.Kind == "NetworkAttachmentDefinition" {
		return parseNAD(&fe, probe.Metadata.Name, probe.Metadata.Namespace, probe.Spec.Config)
	}
	n := &Network{}
	decodeStrict(&fe, "", js, n)
	if len(fe.errs) == 0 {
		n.validate(&fe, "")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return n, nil
}

// ParseNAD parses the spec.config of the NetworkAttachmentDefinition
// namespace/name as a telcni network named after it.
func ParseNAD(name, namespace, config string) (*Network, error) {
	var fe fieldErrors
	return parseNAD(&fe, name, namespace, config)
}

func parseNAD(fe *fieldErrors, name, namespace, config string) (*Network, error) {
	if strings.TrimSpace(config) == "" {
		fe.add("spec.config", nil, "is required (a telcni CNI config)")
		return nil, fe.err()
	}
	n := &Network{}
	decodeStrict(fe, "spec.config", []byte(config), n)
	if n.Name == "" || n.Name == name {
		n.Name = name
	} else {
		fe.add("spec.config.name", n.Name, "differs from metadata.name %q", name)
	}
	if namespace != "" {
		n.Namespace = namespace
	}
	if len(fe.errs) == 0 {
		n.validate(fe, "spec.config")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return n, nil
}

// toJSON returns data as JSON, converting YAML when it is not JSON already.
func toJSON(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
		return trimmed, nil
	}
	return yaml.YAMLToJSON(data)
}
