package topology

import "github.com/tmwarden/tmwarden/flink/rest"

// FromREST converts what rest.Client.Placement read into ObserveREST's arguments.
func FromREST(cp *rest.ClusterPlacement) ([]RESTJob, []RESTTaskManager) {
	if cp == nil {
		return nil, nil
	}
	jobs := make([]RESTJob, 0, len(cp.Jobs))
	for _, jp := range cp.Jobs {
		jobs = append(jobs, JobFromREST(jp))
	}
	tms := make([]RESTTaskManager, 0, len(cp.TaskManagers))
	for _, tm := range cp.TaskManagers {
		tms = append(tms, RESTTaskManager{ID: tm.ID, RPCHost: tm.RPCHost()})
	}
	return jobs, tms
}

// JobFromREST converts one job for ObserveRESTJob.
func JobFromREST(jp rest.JobPlacement) RESTJob {
	j := RESTJob{}
	if jp.Job != nil {
		j.ID, j.Name, j.State = jp.Job.ID, jp.Job.Name, jp.Job.State
	}
	parallelism := map[string]int{}
	if jp.Job != nil {
		for _, v := range jp.Job.Vertices {
			parallelism[v.ID] = v.Parallelism
		}
	}
	for _, vd := range jp.Vertices {
		if vd == nil {
			continue
		}
		v := RESTVertex{ID: vd.ID, Name: vd.Name, Parallelism: max(vd.Parallelism, parallelism[vd.ID])}
		for _, st := range vd.Subtasks {
			v.Subtasks = append(v.Subtasks, RESTSubtask{
				Index: st.Index, Attempt: st.Attempt, Status: st.Status,
				TaskManagerID: st.TaskManagerID, Host: st.Host(),
			})
		}
		j.Vertices = append(j.Vertices, v)
	}
	return j
}
