package node

import (
	"net"

	"github.com/trireme-db/trireme/internal/repl"
)

// HandleStream implements transport.Handler: a stream a peer opened
// (snapshot transfers). Nothing uses streams yet, so it is closed at once.
func (n *Node) HandleStream(from repl.NodeID, c net.Conn) {
	c.Close()
}
