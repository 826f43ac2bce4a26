package tmwardenv1

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzAgentMessage feeds arbitrary bytes to what the coordinator does with every message off
// the wire: decode, then validate. Neither may panic, and a message that validates must keep
// the invariants ingest relies on.
func FuzzAgentMessage(f *testing.F) {
	seeds := []*AgentMessage{
		{Msg: &AgentMessage_Hello{Hello: &Hello{NodeName: "node-1", ProtocolVersion: 1, InstanceId: "abc", ReportIntervalSeconds: 5}}},
		{Msg: &AgentMessage_Report{Report: &Report{Sequence: 7, CollectedAt: timestamppb.Now(), Host: &HostSignals{NumCpus: 4}}}},
		{Msg: &AgentMessage_Report{Report: &Report{Sequence: 1, CollectedAt: &timestamppb.Timestamp{Seconds: -1 << 62}}}},
		{Msg: &AgentMessage_CommandAck{CommandAck: &CommandAck{CommandId: "c1", Accepted: true}}},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &AgentMessage{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		if h := m.GetHello(); h != nil && ValidateHello(h) == nil {
			if !ValidNodeName(h.NodeName) || h.InstanceId == "" || h.ProtocolVersion != 1 {
				t.Fatalf("hello validated but breaks an invariant: %v", h)
			}
		}
		if r := m.GetReport(); r != nil && ValidateReport(r) == nil {
			if r.Sequence == 0 || !r.CollectedAt.IsValid() {
				t.Fatalf("report validated but breaks an invariant: %v", r)
			}
		}
	})
}
