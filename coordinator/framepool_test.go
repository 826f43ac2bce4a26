package coordinator

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// A frame read from an agent sits in a buffer at most half as large again as the frame (the
// reports waiting in the fleet's flow-control windows are the coordinator's heap when it falls
// behind); gRPC's default pool put a 1.5 KB report in 4 KiB and a 5 KB one in 16 KiB.
func TestFrameBuffersFitReports(t *testing.T) {
	for _, c := range []struct {
		name string
		pool mem.BufferPool
		want bool
	}{{"frameBufferPool", frameBufferPool, true}, {"gRPC's default", mem.DefaultBufferPool(), false}} {
		fits := true
		for n := 257; n <= 32<<10; n += 97 {
			b := c.pool.Get(n)
			if len(*b) != n {
				t.Fatalf("%s: Get(%d) has length %d", c.name, n, len(*b))
			}
			if cap(*b) > n*3/2 {
				fits = false
				if c.want {
					t.Errorf("%s: a frame of %d bytes is held in %d", c.name, n, cap(*b))
				}
			}
			c.pool.Put(b)
		}
		if !c.want && fits {
			t.Errorf("%s fits every frame size too: this test would not tell the pools apart", c.name)
		}
	}
}
