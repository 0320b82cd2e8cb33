package hostcache

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate and New when a Config
	// names an unknown kind, layout or dtype, has a zero or negative size, or
	// describes a pool whose byte size overflows.
	ErrInvalidConfig = errors.New("hostcache: invalid config")

	// ErrBadRegion is returned by Wrap when the memory it is given cannot
	// hold the pool: a nil base, fewer bytes than the Config describes, or a
	// base not aligned to the element size.
	ErrBadRegion = errors.New("hostcache: memory does not fit the pool")

	// ErrClosed is returned by every Pool method called after Close.
	ErrClosed = errors.New("hostcache: pool is closed")

	// ErrBadIndices is returned when host indices do not come as whole pages:
	// a count that is not a multiple of PageSize, or a group of PageSize slots
	// that is not consecutive or does not start on a page boundary.
	ErrBadIndices = errors.New("hostcache: indices are not whole pages")

	// ErrOutOfRange is returned when a slot index lies outside the pool.
	ErrOutOfRange = errors.New("hostcache: slot index out of range")

	// ErrPageLength is returned by SetFromFlatDataPage when the page is not
	// exactly PageBytes long.
	ErrPageLength = errors.New("hostcache: flat page has the wrong length")

	// ErrDoubleFree is returned by Free when a page is already free, or is
	// named twice in one call.
	ErrDoubleFree = errors.New("hostcache: slot is already free")

	// ErrNoSpace is returned by Alloc when fewer free slots remain than asked
	// for. Nothing is allocated in that case.
	ErrNoSpace = errors.New("hostcache: not enough free slots")
)
