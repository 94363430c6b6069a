//go:build !linux

package vfs

func (f osFile) dropCache() error { return nil }
