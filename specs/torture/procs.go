//go:build linux

package torture

func procsChild(enc []byte) (any, error)  { return nil, nil }
func nofileChild(enc []byte) (any, error) { return nil, nil }
