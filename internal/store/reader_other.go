//go:build !linux

package store

func newReaders() readers { return goroutineReaders{} }
