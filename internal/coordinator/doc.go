// Package coordinator owns leadership through an external coordinator: a
// lease-backed key in a real etcd cluster, and the fencing term that goes with
// it.
//
// An Elector is one node's handle on that key. It promises:
//
//   - at most one Elector holds /trireme/<cluster>/leader at a time in etcd,
//     and the key is attached to its etcd lease, so it disappears when the
//     holder stops renewing;
//   - each successful TryAcquire advances /trireme/<cluster>/term in the same
//     transaction that creates the leader key, so holders' terms strictly
//     increase, forever, and no two acquisitions get the same term;
//   - ValidUntil never runs past the moment etcd could expire the lease: it is
//     counted from when the last acknowledged keepalive was sent, less a
//     margin for clock rate drift. Holding is false from that moment, and as
//     soon as etcd says the lease or the key is gone;
//   - a stored term that is not a canonical decimal uint64 is an error
//     (ErrBadTerm), never a panic.
//
// It does not decide what is committed: the replication core's log rules do.
// The coordinator only says who may lead, with which term. See DESIGN.md.
//
// # Keys
//
//	/trireme/<cluster>/leader  value: the holder's node id; attached to its lease
//	/trireme/<cluster>/term    value: the last term handed out, decimal ASCII
//	                           ("42"); never deleted by this package
package coordinator
