//go:build linux

package main

import (
	"bufio"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readHidden reads a line from the terminal f without echoing it. ok is
// false if f is not a terminal.
func readHidden(f *os.File) (line string, ok bool, err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", false, nil
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", true, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	line, err = bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", true, err
	}
	return strings.TrimRight(line, "\r\n"), true, nil
}
