package rest

import (
	"context"
	"errors"
	"fmt"
)

// JobPlacement is one running job with every vertex's subtasks (and their TaskManagers).
type JobPlacement struct {
	Job      *JobDetails
	Vertices []*VertexDetails
}

// ClusterPlacement is what the coordinator's topology needs from one JobManager.
type ClusterPlacement struct {
	Jobs         []JobPlacement
	TaskManagers []TaskManagerInfo
}

// Placement reads the running jobs, their vertices' subtasks and the TaskManagers: 2 + jobs ×
// (1 + vertices) calls. A job that ends between the calls (404) is left out; other errors fail
// the whole read so that the caller never mistakes a partial view for jobs having stopped.
func (c *Client) Placement(ctx context.Context) (*ClusterPlacement, error) {
	tms, err := c.TaskManagers(ctx)
	if err != nil {
		return nil, err
	}
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := &ClusterPlacement{TaskManagers: tms}
	for _, j := range jobs {
		if j.Status != "RUNNING" {
			continue
		}
		jp, err := c.jobPlacement(ctx, j.ID)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Jobs = append(out.Jobs, *jp)
	}
	return out, nil
}

func (c *Client) jobPlacement(ctx context.Context, jobID string) (*JobPlacement, error) {
	d, err := c.Job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	jp := &JobPlacement{Job: d}
	var errs []error
	for _, v := range d.Vertices {
		vd, err := c.Vertex(ctx, jobID, v.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		jp.Vertices = append(jp.Vertices, vd)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("job %s vertices: %w", jobID, errors.Join(errs...))
	}
	return jp, nil
}
