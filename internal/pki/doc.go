// Package pki owns the certificates that authenticate Trireme nodes to each
// other: a cluster certificate authority (CA), one certificate per member,
// the directory they live in, and how a certificate names its member and its
// cluster.
//
// It promises: a member certificate is accepted only if it chains to the
// cluster's CA, and it names exactly one member id; the CA names the
// cluster's id, which is random (it says nothing about the members and does
// not change when they do); private keys are written with mode 0600 and never
// overwritten; Ensure is idempotent (it creates what is missing and keeps the
// rest).
//
// # Directory layout
//
// A certificate directory (`trireme certs --dir DIR`, or DATA/certs under
// `trireme up`) holds PEM files:
//
//	ca.crt     the cluster CA's certificate (every node needs it)
//	ca.key     the CA's private key (only for issuing; nodes never read it)
//	ID.crt     member ID's certificate, signed by the CA
//	ID.key     member ID's private key (PKCS #8)
//
// A node started with `--peer-tls-dir DIR --id ID` reads ca.crt, ID.crt and
// ID.key; a production deployment gives each machine only those three.
//
// # Certificate profile
//
// Keys are ECDSA P-256. The CA is self-signed, a CA for certificate signing
// only (path length 0), and carries the cluster id as the URI SAN
// trireme://cluster/CLUSTER-ID. A member certificate has the member id as
// its common name and as the URI SAN trireme://member/ID, the extended key
// usages server and client authentication (every node both dials and
// accepts), and loopback DNS and IP SANs (localhost, 127.0.0.1, ::1) for
// tools that check host names. Peers check the member id, not host names: a
// peer address may be a proxy, a NAT or a name the certificate cannot know.
// The URI forms above are part of the certificate format.
package pki
