package coordinator

import "time"

// SetPersistEvery changes how often an unchanged node record is written (reportPersistEvery);
// 0 writes it with every report, as the coordinator did before, for a benchmark's comparison.
func SetPersistEvery(c *Coordinator, d time.Duration) { c.persistEvery = d }
