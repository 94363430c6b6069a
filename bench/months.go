package bench

import (
	"context"
	"os"
	"path/filepath"
)

// monthsParts runs the selected parts of issue 16 (running for months):
// learners, replica, snapshot, each on a fresh cluster of its own, in that
// order, after the other parts. step runs one part and records its error.
func (r *runner) monthsParts(ctx context.Context, step func(name string, f func() error)) {
	cfg, p := r.cfg, r.cfg.Profile
	insecure := cfg.peerTLS() == "off"
	// part runs f with a data directory of its own, removed after unless Keep.
	part := func(name, dirName string, f func(dir string) error) {
		if !cfg.has(cfg.Parts, name) {
			return
		}
		dir := filepath.Join(cfg.WorkDir, dirName)
		step(name, func() error {
			r.say("%s: load average %s", name, loadAverage())
			err := f(dir)
			r.say("%s: load average %s", name, loadAverage())
			if !cfg.Keep {
				os.RemoveAll(dir)
			}
			return err
		})
	}
	part("learners", "trireme-learners", func(dir string) error {
		l, err := TriremeLearners(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, p, p.ValueSizes[0], targetClients, cfg.Seed, r.progress)
		if len(l.Runs) > 0 {
			r.res.Learners = &l
		}
		return err
	})
	part("replica", "trireme-replica", func(dir string) error {
		x, err := TriremeReplica(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, p.ReplicaBytes, p.CatchUpValue, p.CatchUpTrials, p.PhaseWindow, r.progress)
		if x.PreloadSecs > 0 {
			r.res.Replica = &x
		}
		return err
	})
	part("snapshot", "trireme-snapshot", func(dir string) error {
		if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil { // -work may name a new directory
			return err
		}
		if r.res.Disk == nil { // the disk part did not run: measure it here, in the same run
			d, err := MeasureDisk(cfg.WorkDir, p.DiskBytes, p.Fsyncs)
			if err != nil {
				return err
			}
			r.res.Disk = &d
			r.say("disk: sequential write %.0f MB/s; 4 KiB write+fsync p50 %.0f µs, %.0f/s", d.SeqWriteMBps, d.FsyncP50us, d.FsyncPerSecond)
		}
		disk := func() (float64, error) {
			d, err := MeasureDisk(cfg.WorkDir, p.DiskBytes, p.Fsyncs)
			return d.SeqWriteMBps, err
		}
		x, err := TriremeSnapshot(ctx, cfg.TriremeBin, dir, cfg.NodeProcs, insecure, p.SnapshotBytes, p.CatchUpValue, p.CatchUpTrials, p.PhaseWindow,
			r.res.Disk.SeqWriteMBps, disk, r.progress)
		if len(x.Trials) > 0 {
			r.res.Snapshot = &x
		}
		return err
	})
}
