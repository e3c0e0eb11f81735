package api

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSelectionsShortForm(t *testing.T) {
	sels, err := ParseSelections(" a, ns2/b ,c@fh0,ns3/d@up0", "pods")
	if err != nil {
		t.Fatal(err)
	}
	want := []NetworkSelection{
		{Name: "a", Namespace: "pods"},
		{Name: "b", Namespace: "ns2"},
		{Name: "c", Namespace: "pods", Interface: "fh0"},
		{Name: "d", Namespace: "ns3", Interface: "up0"},
	}
	if len(sels) != len(want) {
		t.Fatalf("got %d selections, want %d", len(sels), len(want))
	}
	for i := range want {
		if sels[i].Name != want[i].Name || sels[i].Namespace != want[i].Namespace || sels[i].Interface != want[i].Interface {
			t.Errorf("selection %d = %+v, want %+v", i, sels[i], want[i])
		}
	}
}

func TestParseSelectionsJSON(t *testing.T) {
	sels, err := ParseSelections(`[{"name":"fronthaul","interface":"fh0","ips":["10.20.0.5/24","fd00::5/64"],
		"mac":"02:00:00:00:00:05","default-route":["10.20.0.1"],"cni-args":{"x":1}},
		{"name":"userplane","namespace":"core"}]`, "ran")
	if err != nil {
		t.Fatal(err)
	}
	if sels[0].Namespace != "ran" || sels[0].IPs[1] != "fd00::5/64" || sels[0].MAC != "02:00:00:00:00:05" ||
		sels[0].DefaultRoute[0] != "10.20.0.1" || sels[0].CNIArgs["x"] != float64(1) {
		t.Errorf("first selection decoded wrong: %+v", sels[0])
	}
	if sels[1].Namespace != "core" || sels[1].Interface != "" {
		t.Errorf("second selection decoded wrong: %+v", sels[1])
	}
}

func TestParseSelectionsReportsEveryFieldError(t *testing.T) {
	_, err := ParseSelections(`[{"name":"ok","interface":"fh0"},
		{"name":"net","ips":["10.0.0.300/24","10.0.0.3/24","10.0.0.4/24"],"mac":"zz","interface":"fh0"},
		{"name":"Bad_Name","bandwidth":{},"colour":"red","interface":"this-name-is-too-long"}]`, "default")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`networks[1].ips[0]: "10.0.0.300/24" is not an IP prefix`,
		`networks[1].ips[2]: "10.0.0.4/24" is a second address of the same IP family`,
		`networks[1].mac: "zz" is not an Ethernet MAC address`,
		`networks[1].interface: "fh0" is already used by networks[0]`,
		`networks[2].name: "Bad_Name" is not a valid network name`,
		`networks[2].bandwidth: "{}" is not supported by telcni`,
		`networks[2].colour: is not a network-selection field`,
		`networks[2].interface: "this-name-is-too-long" is not a valid interface name`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q\nfull error: %s", want, msg)
		}
	}
	if len(ve.Errors) != 8 {
		t.Errorf("got %d field errors, want 8: %s", len(ve.Errors), msg)
	}
}

func TestParseSelectionsMalformed(t *testing.T) {
	for _, in := range []string{`[{"name":`, `{"name":"a"}`, `[{"name": 5}]`, `a,,b`, `ns/@x`, `[{"ips":"10.0.0.1/24","name":"a"}]`} {
		if _, err := ParseSelections(in, "default"); err == nil {
			t.Errorf("ParseSelections(%q) succeeded, want an error", in)
		} else if !strings.Contains(err.Error(), "networks") {
			t.Errorf("ParseSelections(%q) error %q names no field", in, err)
		}
	}
}

func FuzzParseSelections(f *testing.F) {
	for _, s := range []string{"a,ns/b,c@fh0", `[{"name":"a","ips":["10.0.0.1/24"],"interface":"x"}]`, `[{}]`, "", "@", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sels, err := ParseSelections(s, "default")
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a non-empty ValidationError: %v", err)
			}
			return
		}
		for _, sel := range sels {
			if !ValidName(sel.Name) || !ValidName(sel.Namespace) {
				t.Fatalf("accepted invalid selection %+v", sel)
			}
			if sel.Interface != "" && !ValidIfName(sel.Interface) {
				t.Fatalf("accepted invalid interface %q", sel.Interface)
			}
		}
	})
}
