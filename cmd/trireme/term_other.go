//go:build !linux

package main

import "os"

// readHidden reports that no terminal can be read without echo here: the
// password must then come on standard input.
func readHidden(*os.File) (string, bool, error) { return "", false, nil }

// isTerminal reports false: see readHidden.
func isTerminal(*os.File) bool { return false }
