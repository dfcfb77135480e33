// libcni 1.1 has no STATUS and no GC (see libcni_driver.go).
package main

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/libcni"
)

func networkCommand(_ context.Context, _ *libcni.CNIConfig, _ *libcni.NetworkConfigList, req *request) error {
	return fmt.Errorf("%s needs libcni 1.2 or later", req.Command)
}
