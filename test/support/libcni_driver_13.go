// CNI 1.1's STATUS and GC through libcni 1.3 (see libcni_driver.go).
package main

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func networkCommand(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, req *request) error {
	switch req.Command {
	case "STATUS":
		return cni.GetStatusNetworkList(ctx, list)
	case "GC":
		valid := []types.GCAttachment{}
		for _, a := range req.Valid {
			valid = append(valid, types.GCAttachment{ContainerID: a[0], IfName: a[1]})
		}
		return cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
	}
	return fmt.Errorf("unknown command %q", req.Command)
}
