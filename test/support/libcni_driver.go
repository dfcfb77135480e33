// libcni_driver runs one request through the real libcni (Debian's
// golang-github-containernetworking-cni-dev source, built in GOPATH mode by
// test/test_libcni.py), so if-inject's CNI layer can be compared with it.
//
// It reads one JSON request on stdin and prints one JSON answer on stdout:
//
//	{"command": "ADD|CHECK|DEL", "conf": FILE, "cacheDir": DIR, "cniPath": [DIR],
//	 "containerId": ID, "netns": PATH, "ifName": NAME, "args": [[K, V]],
//	 "capabilityArgs": {...}}
//	-> {"result": {...}} (ADD), {} (CHECK, DEL) or {"error": "..."}
//
//	{"command": "CONVERT", "result": {...}, "version": V}
//	-> {"result": {...}} or {"error": "..."}  (the result as libcni's GetAsVersion gives it)
//
//	{"command": "STATUS|GC", "conf": FILE, "cacheDir": DIR, "cniPath": [DIR],
//	 "validAttachments": [[ID, IFNAME]]}  (GC's)
//	-> {} or {"error": "...", "code": N}  (libcni 1.2+: GetStatusNetworkList, GCNetworkList)
//
// An error that is a plugin's CNI error carries its code. This file builds with
// libcni_driver_112.go against libcni 1.1 (no STATUS, GC) or with
// libcni_driver_13.go against libcni 1.3.
//
// A conf with "plugins" goes through the list functions (AddNetworkList ...),
// a single plugin conf through the single ones (AddNetwork ...).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
)

type request struct {
	Command        string                 `json:"command"`
	Conf           string                 `json:"conf"`
	CacheDir       string                 `json:"cacheDir"`
	CNIPath        []string               `json:"cniPath"`
	ContainerID    string                 `json:"containerId"`
	NetNS          string                 `json:"netns"`
	IfName         string                 `json:"ifName"`
	Args           [][2]string            `json:"args"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
	Result         json.RawMessage        `json:"result"`
	Version        string                 `json:"version"`
	Valid          [][2]string            `json:"validAttachments"`
}

func main() {
	var req request
	answer := map[string]interface{}{}
	err := json.NewDecoder(os.Stdin).Decode(&req)
	if err == nil {
		var result types.Result
		result, err = run(&req)
		if result != nil {
			answer["result"] = result
		}
	}
	if err != nil {
		answer["error"] = err.Error()
		var cniErr *types.Error
		if errors.As(err, &cniErr) {
			answer["code"] = cniErr.Code
		}
	}
	out, _ := json.Marshal(answer)
	fmt.Println(string(out))
	if err != nil {
		os.Exit(1)
	}
}

func run(req *request) (types.Result, error) {
	if req.Command == "CONVERT" {
		result, err := create.CreateFromBytes(req.Result)
		if err != nil {
			return nil, err
		}
		return result.GetAsVersion(req.Version)
	}
	raw, err := os.ReadFile(req.Conf)
	if err != nil {
		return nil, err
	}
	var probe map[string]interface{}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, err
	}
	cni := libcni.NewCNIConfigWithCacheDir(req.CNIPath, req.CacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: req.ContainerID, NetNS: req.NetNS, IfName: req.IfName,
		Args: req.Args, CapabilityArgs: req.CapabilityArgs}
	ctx := context.Background()
	if _, isList := probe["plugins"]; isList {
		list, err := libcni.ConfListFromBytes(raw)
		if err != nil {
			return nil, err
		}
		switch req.Command {
		case "STATUS", "GC":
			return nil, networkCommand(ctx, cni, list, req)
		case "ADD":
			return cni.AddNetworkList(ctx, list, rt)
		case "CHECK":
			return nil, cni.CheckNetworkList(ctx, list, rt)
		case "DEL":
			return nil, cni.DelNetworkList(ctx, list, rt)
		}
	} else {
		conf, err := libcni.ConfFromBytes(raw)
		if err != nil {
			return nil, err
		}
		switch req.Command {
		case "ADD":
			return cni.AddNetwork(ctx, conf, rt)
		case "CHECK":
			return nil, cni.CheckNetwork(ctx, conf, rt)
		case "DEL":
			return nil, cni.DelNetwork(ctx, conf, rt)
		}
	}
	return nil, fmt.Errorf("unknown command %q", req.Command)
}
