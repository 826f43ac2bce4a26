package decide

import "fmt"

// Marked returns the nodes that must carry the quarantine marks on the cluster now (node ->
// why): a node being migrated or quarantined, except one whose release is under way. Every other
// node, a node whose migration failed included, must carry none. The actuator reconciles the
// cluster to this each round, so the marks follow the policy's states and nothing else.
func (p *Policy) Marked() map[string]string {
	out := map[string]string{}
	for name, ns := range p.s.Nodes {
		switch ns.State {
		case Migrating:
			out[name] = fmt.Sprintf("tmwarden is moving this node's TaskManagers away (%s)", orUnknown(ns.Cause))
		case Quarantined:
			if a, ok := p.s.Open[ns.Action]; ok && a.Kind == KindRelease {
				continue
			}
			out[name] = fmt.Sprintf("quarantined by tmwarden since %s (%s)", ns.Since.UTC().Format("2006-01-02T15:04:05Z"), orUnknown(ns.Cause))
		}
	}
	return out
}
