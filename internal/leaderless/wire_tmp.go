package leaderless

const MaxItems = 4096 // TEMP until wire.go lands
