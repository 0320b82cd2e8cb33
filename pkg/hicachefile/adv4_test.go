package hicachefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAdv4OpenatRawLikeOpenat: openatRaw, the default Syscalls.Openat,
// returns what unix.Openat returns, errors comparable with ==, for the
// names that unix.Openat treats apart: a NUL inside, 255 and 256 bytes,
// empty, missing, existing with O_EXCL, a directory opened for writing,
// a symlink with O_NOFOLLOW.
func TestAdv4OpenatRawLikeOpenat(t *testing.T) {
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(dfd) }()
	long255 := strings.Repeat("a", 255)
	if err := os.WriteFile(filepath.Join(dir, long255), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	rd := unix.O_RDONLY | unix.O_CLOEXEC
	for _, c := range []struct {
		name, path string
		flags      int
		want       error
	}{
		{"255 bytes", long255, rd, nil},
		{"256 bytes", strings.Repeat("a", 256), rd, unix.ENAMETOOLONG},
		{"NUL inside", "f\x00x", rd, unix.EINVAL},
		{"NUL at the end", "f\x00", rd, unix.EINVAL},
		{"empty", "", rd, unix.ENOENT},
		{"missing", "nope", rd, unix.ENOENT},
		{"O_EXCL over a file", "f", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC, unix.EEXIST},
		{"directory for writing", "d", unix.O_WRONLY | unix.O_CLOEXEC, unix.EISDIR},
		{"symlink, O_NOFOLLOW", "l", rd | unix.O_NOFOLLOW, unix.ELOOP},
		{"path through a file", "f/x", rd, unix.ENOTDIR},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, open := range []struct {
				name string
				f    func(int, string, int, uint32) (int, error)
			}{{"openatRaw", openatRaw}, {"unix.Openat", unix.Openat}} {
				fd, err := open.f(dfd, c.path, c.flags, 0o644)
				if err != c.want {
					t.Errorf("%s = %d, %v; want error %v", open.name, fd, err, c.want)
				}
				if err == nil {
					_ = unix.Close(fd)
				}
			}
		})
	}
}

// TestAdv4OpenatRawLargeFile: openatRaw opens a file of more than 2 GiB.
// unix.Openat adds O_LARGEFILE, which 32-bit kernels (GOARCH=386, arm)
// need for such a file: without it the open fails with EOVERFLOW. Run
// with GOARCH=386 to see it.
func TestAdv4OpenatRawLargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil { // sparse
		t.Skip("no room for a sparse 3 GiB file:", err)
	}
	_ = f.Close()
	fd, err := openatRaw(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("openatRaw of a 3 GiB file: %v", err)
	}
	_ = unix.Close(fd)
}

// TestAdv4VectoredPastFourGiB: preadvRaw and pwritevRaw move bytes at an
// offset past 4 GiB, where a 32-bit kernel takes the offset's high word
// from a system call argument of its own.
func TestAdv4VectoredPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	fd := int(f.Fd())
	if err := vectored(pwritevRaw, fd, [][]byte{[]byte("abc"), []byte("de")}, off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := unix.Pread(fd, got, off); err != nil || string(got) != "abcde" {
		t.Fatalf("pwritevRaw at 5 GiB: pread finds %q, %v", got, err)
	}
	if _, err := unix.Pwrite(fd, []byte("xyz"), off+8); err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 1), make([]byte, 2)
	if err := vectored(preadvRaw, fd, [][]byte{a, b}, off+8); err != nil || string(a)+string(b) != "xyz" {
		t.Fatalf("preadvRaw at 5 GiB = %q, %v; want xyz", string(a)+string(b), err)
	}
}

// TestAdv4PreadNowaitPastFourGiB: preadNowait, which loads batch file
// indexes, reads at an offset past 4 GiB (see TestAdv4VectoredPastFourGiB).
func TestAdv4PreadNowaitPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	if _, err := f.WriteAt([]byte("abc"), off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if n, err := preadNowait(int(f.Fd()), got, off); err != unix.EAGAIN && (err != nil || n != 3 || string(got) != "abc") {
		t.Fatalf("preadNowait at 5 GiB = %d, %q, %v; want abc", n, got, err)
	}
}
