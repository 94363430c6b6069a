package repl

// Core is one node's replication state machine. It is not safe for concurrent
// use: the runtime (or the simulator) calls it from one goroutine.
//
// STUB: the method set below is the contract; bodies are being written.
type Core struct{}

// New creates a core from cfg, restoring its state from st.
func New(cfg Config, st Storage) (*Core, error) { panic("repl: not implemented") }

// Tick advances the core's logical clock by one tick.
func (c *Core) Tick() {}

// Step feeds one message received from a peer. A malformed or unexpected
// message returns an error and changes nothing; it never panics.
func (c *Core) Step(m Message) error { return nil }

// Propose hands a write to the leader. Errors: ErrNotLeader, ErrTransferring,
// ErrBusy, ErrNotEnoughPeers. The outcome arrives later as a Result in Ready.
func (c *Core) Propose(p Proposal) error { return nil }

// Read asks for a linearizable read point; the answer arrives as a ReadResult.
func (c *Core) Read(r ReadRequest) error { return nil }

// TransferLeadership starts a planned switchover to `to`.
func (c *Core) TransferLeadership(to NodeID) error { return nil }

// HasReady reports whether Ready would return work.
func (c *Core) HasReady() bool { return false }

// Ready returns the pending work; see Ready for the order of processing.
func (c *Core) Ready() Ready { return Ready{} }

// Advance tells the core that rd has been fully processed.
func (c *Core) Advance(rd Ready) {}

// Status returns a snapshot of the core's state.
func (c *Core) Status() Status { return Status{} }
