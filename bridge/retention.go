package bridge

// Retention: what the bridge keeps about conversations is pruned on a schedule.

import (
	"context"
	"time"
)

// retentionLoop prunes old message mappings and transaction IDs once an hour.
func (br *Bridge) retentionLoop(ctx context.Context, started time.Time) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		br.pruneOnce(ctx)
		// A spool file no queued event names is an earlier run's leftover, or one a
		// connector made and never queued; an hour is far past any download's end.
		before := time.Now().Add(-time.Hour)
		if before.Before(started) {
			before = started
		}
		br.sweepSpool(ctx, before)
		br.cleanupUnused(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (br *Bridge) pruneOnce(ctx context.Context) {
	retention := time.Duration(br.Config.Bridge.Retention)
	n, err := br.DB.PruneMessages(ctx, time.Now().Add(-retention))
	if err != nil {
		br.Log.Warn().Err(err).Msg("Pruning message map failed")
	} else if n > 0 {
		br.Log.Info().Int64("deleted", n).Msg("Pruned message mappings past retention")
	}
	// Dendrite retries a failed transaction forever; a week covers any sane outage.
	if err = br.DB.PruneInboxKeys(ctx, time.Now().Add(-7*24*time.Hour)); err != nil {
		br.Log.Warn().Err(err).Msg("Pruning inbox keys failed")
	}
}
