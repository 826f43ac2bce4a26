// Command tmstandin serves TaskManager /metrics endpoints for benchmarks that need a Flink
// TaskManager on the machine: one per requested Flink version, each running -subtasks subtasks
// (4 vertices), rendered by the cluster simulator in that version's reporter format.
// It prints one "VERSION HOST:PORT" line per TaskManager, then serves until SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

func main() {
	versions := flag.String("versions", flinksim.Version120+","+flinksim.Version20, "comma-separated Flink versions, one TaskManager each")
	subtasks := flag.Int("subtasks", 200, "subtasks per TaskManager (a multiple of 4: four vertices)")
	flag.Parse()
	if *subtasks <= 0 || *subtasks%4 != 0 {
		fmt.Fprintln(os.Stderr, "tmstandin: -subtasks must be a positive multiple of 4")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	par := *subtasks / 4
	for _, v := range strings.Split(*versions, ",") {
		cl, err := flinksim.Start(ctx, flinksim.Config{
			Version:      v,
			TaskManagers: []flinksim.TaskManagerSpec{{Node: "bench", Slots: par}},
			Jobs: []flinksim.JobSpec{{Name: "bench", Rate: float64(par) * 2000, Vertices: []flinksim.VertexSpec{
				{Name: "Source: events-kafka", Parallelism: par, Capacity: 1e4},
				{Name: "Enrich", Parallelism: par, Capacity: 1e4},
				{Name: "Window", Parallelism: par, Capacity: 1e4},
				{Name: "Sink: out", Parallelism: par, Capacity: 1e4},
			}}},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "tmstandin:", err)
			os.Exit(1)
		}
		defer cl.Close()
		fmt.Printf("%s %s\n", v, cl.TaskManagers()[0].MetricsAddr)
	}
	<-ctx.Done()
}
